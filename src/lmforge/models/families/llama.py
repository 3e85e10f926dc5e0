"""Llama (Touvron et al. 2023; Llama 3, Dubey et al. 2024): RoPE, RMSNorm, SwiGLU MLP, GQA, no biases.

Grouped-query attention comes from `num_kv_heads` in the config; `bias` stays False in the
llama-* presets.
"""

from __future__ import annotations

from typing import Any, Optional

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.interop.hf import (Rule, add_rule, check_head_dim, check_no_sliding_window, import_transformers,
                                plain_rope_theta, rule_mapping)
from lmforge.models.blocks import BlockSpec
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, swiglu_hidden_dim, transformer_builder
from lmforge.models.presets import resolve_model_config
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="rmsnorm", mlp="swiglu", positions="rope")

_LLAMA = {"family": "llama", "bias": False, "norm_eps": 1e-5}
PRESETS = {
    "llama-tiny": {**_LLAMA, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                   "num_heads": 4, "num_kv_heads": 2, "tie_embeddings": False},
    # About 3M non-embedding parameters, ~25 MFLOP/token at seq 256: ~5 minutes on 2 CPU cores.
    "llama-quickstart": {**_LLAMA, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8,
                         "num_kv_heads": 4, "multiple_of": 64, "tie_embeddings": True},
    # The shape of SmolLM-135M (a Llama-architecture model, 134.5M parameters, tied).
    "llama-135m": {**_LLAMA, "vocab_size": 49152, "max_seq_len": 2048, "dim": 576, "num_layers": 30,
                   "num_heads": 9, "num_kv_heads": 3, "hidden_dim": 1536, "tie_embeddings": True},
    # Approximately Llama 3.2 1B (1.24B parameters). Its 128k context relies on "llama3" RoPE
    # frequency scaling, which is not implemented here, so the context is the 8k of pretraining.
    "llama-1b": {**_LLAMA, "vocab_size": 128256, "max_seq_len": 8192, "dim": 2048, "num_layers": 16,
                 "num_heads": 32, "num_kv_heads": 8, "hidden_dim": 8192, "rope_theta": 500000.0,
                 "tie_embeddings": True},
}


# HF LlamaForCausalLM (and MistralForCausalLM, which shares its names): separate projections, a
# pure rename. Our RoPE uses HF's "rotate half" pairing, so q/k rows need no permutation.
def hf_rules(cfg: ModelConfig) -> list[Rule]:
    rules: list[Rule] = [(["tok_embeddings.weight"], "model.embed_tokens.weight", False)]
    for i in range(cfg.num_layers):
        ours, hf = f"layers.{i}", f"model.layers.{i}"
        add_rule(rules, [f"{ours}.attn_norm"], f"{hf}.input_layernorm", has_bias=False)
        for our_name, hf_name in (("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"),
                                  ("out_proj", "o_proj")):
            add_rule(rules, [f"{ours}.attn.{our_name}"], f"{hf}.self_attn.{hf_name}", has_bias=cfg.bias)
        add_rule(rules, [f"{ours}.mlp_norm"], f"{hf}.post_attention_layernorm", has_bias=False)
        for our_name, hf_name in (("gate_proj", "gate_proj"), ("up_proj", "up_proj"), ("out_proj", "down_proj")):
            add_rule(rules, [f"{ours}.mlp.{our_name}"], f"{hf}.mlp.{hf_name}", has_bias=cfg.bias)
    add_rule(rules, ["norm"], "model.norm", has_bias=False)
    rules.append((["output.weight"], "lm_head.weight", False))
    return rules


def config_to_hf(cfg: ModelConfig, tokens: dict[str, Optional[int]]) -> Any:
    check_no_sliding_window(cfg)
    return import_transformers().LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.dim // cfg.num_heads, hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        attention_bias=cfg.bias, mlp_bias=cfg.bias, attention_dropout=cfg.dropout,
        initializer_range=cfg.init_std, tie_word_embeddings=cfg.tie_embeddings, **tokens)


def config_from_hf(config: Any) -> ModelConfig:
    rope_theta = plain_rope_theta(config)
    check_head_dim(config, "Llama")
    if config.attention_bias != getattr(config, "mlp_bias", False):
        raise ConfigError("HF Llama with attention_bias != mlp_bias is not supported")
    return resolve_model_config(ModelConfig(
        family="llama", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
        dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads or config.num_attention_heads,
        hidden_dim=config.intermediate_size, norm_eps=config.rms_norm_eps, rope_theta=rope_theta,
        tie_embeddings=config.tie_word_embeddings, bias=config.attention_bias,
        init_std=config.initializer_range))


FAMILY = register_family(Family(
    name="llama", summary="RoPE, RMSNorm, SwiGLU, grouped-query attention", blocks=BLOCKS, heads=CAUSAL_HEADS,
    build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS, generation="causal",
    validate=check_one_stack, default_hidden_dim=swiglu_hidden_dim,
    hf=rule_mapping("llama", "LlamaForCausalLM", hf_rules, config_to_hf, config_from_hf,
                    bases={"LlamaModel": "model."})))
