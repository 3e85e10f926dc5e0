"""Falcon (Almazrouei et al. 2023; the falcon-7b layout): RoPE, multi-query attention, parallel
attention and MLP branches over one shared LayerNorm, exact-GELU MLP.

The LayerNorms keep their bias while the linear layers have none (`bias` False in the
falcon-* presets); multi-query attention (Shazeer 2019) is `num_kv_heads: 1` in the config.
"""

from __future__ import annotations

from typing import Any, Optional

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.interop.hf import (Rule, add_rule, check_no_sliding_window, import_transformers, plain_rope_theta,
                                rule_mapping)
from lmforge.models.blocks import BlockSpec
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, transformer_builder
from lmforge.models.presets import resolve_model_config
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="layernorm", mlp="gelu", positions="rope", residual="parallel", norm_bias=True)

_FALCON = {"family": "falcon", "bias": False, "norm_eps": 1e-5, "num_kv_heads": 1, "tie_embeddings": True}
PRESETS = {
    "falcon-tiny": {**_FALCON, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    "falcon-quickstart": {**_FALCON, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8},
    # Falcon-7B (6,921,720,704 parameters): 71 query heads of width 64 and one key/value head.
    "falcon-7b": {**_FALCON, "vocab_size": 65024, "max_seq_len": 2048, "dim": 4544, "num_layers": 32,
                  "num_heads": 71},
}


# HF FalconForCausalLM (falcon-7b's multi-query layout) fuses q, k and v into
# `query_key_value` as the H query heads, then the one key head, then the one value head: our
# three projections concatenated, of unequal sizes. Its LayerNorms always have a bias.
def hf_rules(cfg: ModelConfig) -> list[Rule]:
    rules: list[Rule] = [(["tok_embeddings.weight"], "transformer.word_embeddings.weight", False)]
    for i in range(cfg.num_layers):
        ours, hf = f"layers.{i}", f"transformer.h.{i}"
        add_rule(rules, [f"{ours}.attn_norm"], f"{hf}.input_layernorm")
        add_rule(rules, [f"{ours}.attn.{p}_proj" for p in "qkv"], f"{hf}.self_attention.query_key_value",
                 has_bias=cfg.bias)
        add_rule(rules, [f"{ours}.attn.out_proj"], f"{hf}.self_attention.dense", has_bias=cfg.bias)
        add_rule(rules, [f"{ours}.mlp.in_proj"], f"{hf}.mlp.dense_h_to_4h", has_bias=cfg.bias)
        add_rule(rules, [f"{ours}.mlp.out_proj"], f"{hf}.mlp.dense_4h_to_h", has_bias=cfg.bias)
    add_rule(rules, ["norm"], "transformer.ln_f")
    rules.append((["output.weight"], "lm_head.weight", False))
    return rules


def config_to_hf(cfg: ModelConfig, tokens: dict[str, Optional[int]]) -> Any:
    check_no_sliding_window(cfg)
    if cfg.num_kv_heads != 1:
        raise ConfigError("HF Falcon export supports the falcon-7b multi-query layout only: set "
                          "model.num_kv_heads to 1")
    return import_transformers().FalconConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_kv_heads=1, multi_query=True, parallel_attn=True,
        new_decoder_architecture=False, alibi=False, bias=cfg.bias, ffn_hidden_size=cfg.hidden_dim,
        activation="gelu", max_position_embeddings=cfg.max_seq_len, layer_norm_epsilon=cfg.norm_eps,
        rope_theta=cfg.rope_theta, hidden_dropout=cfg.dropout, attention_dropout=cfg.dropout,
        initializer_range=cfg.init_std, tie_word_embeddings=cfg.tie_embeddings, **tokens)


def config_from_hf(config: Any) -> ModelConfig:
    """falcon-7b's architecture only: the 40b/180b "new decoder architecture" (grouped KV layout,
    two LayerNorms), ALiBi and sequential blocks would build a different model, so they raise."""
    unsupported = {"alibi": config.alibi, "new_decoder_architecture": config.new_decoder_architecture,
                   "parallel_attn=False": not config.parallel_attn, "multi_query=False": not config.multi_query}
    for option, present in unsupported.items():
        if present:
            raise ConfigError(f"HF Falcon option {option} is not supported: only the falcon-7b architecture "
                              "(rotary, multi-query, parallel attention/MLP)")
    if config.activation != "gelu":
        raise ConfigError(f"HF Falcon activation '{config.activation}' is not supported (exact GELU only)")
    return resolve_model_config(ModelConfig(
        family="falcon", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
        dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        num_kv_heads=1, hidden_dim=config.ffn_hidden_size, norm_eps=config.layer_norm_epsilon,
        rope_theta=plain_rope_theta(config), tie_embeddings=config.tie_word_embeddings, bias=config.bias,
        init_std=config.initializer_range))


FAMILY = register_family(Family(
    name="falcon", summary="RoPE, multi-query attention, parallel attention/MLP, LayerNorm, GELU", blocks=BLOCKS,
    heads=CAUSAL_HEADS, build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS,
    generation="causal", validate=check_one_stack,
    hf=rule_mapping("falcon", "FalconForCausalLM", hf_rules, config_to_hf, config_from_hf,
                    bases={"FalconModel": "transformer."})))
