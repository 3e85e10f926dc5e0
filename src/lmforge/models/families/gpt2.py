"""GPT-2 (Radford et al. 2019): learned absolute positions, pre-norm LayerNorm, tanh-GELU MLP, MHA.

Biases and tied input/output embeddings come from the config (the gpt2-* presets set both).
"""

from __future__ import annotations

from typing import Any, Optional

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.interop.hf import Rule, add_rule, check_no_sliding_window, import_transformers, rule_mapping
from lmforge.models.blocks import BlockSpec
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, transformer_builder
from lmforge.models.presets import resolve_model_config
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="layernorm", mlp="gelu_tanh", positions="learned")

_GPT2 = {"family": "gpt2", "bias": True, "tie_embeddings": True, "norm_eps": 1e-5}
PRESETS = {
    # A forward+backward takes milliseconds (tests).
    "gpt2-tiny": {**_GPT2, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    # Sized to train in ~5 minutes on 2 CPU cores; vocab_size comes from the tokenizer.
    "gpt2-quickstart": {**_GPT2, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8},
    # GPT-2 small and medium: 124,439,808 and 354,823,168 parameters.
    "gpt2-124m": {**_GPT2, "vocab_size": 50257, "max_seq_len": 1024, "dim": 768, "num_layers": 12, "num_heads": 12},
    "gpt2-350m": {**_GPT2, "vocab_size": 50257, "max_seq_len": 1024, "dim": 1024, "num_layers": 24, "num_heads": 16},
}


# HF GPT2LMHeadModel fuses q, k and v into one `c_attn` (our three projections concatenated
# along output rows); its Conv1D layers store weights as (in, out), hence the transposes.
def hf_rules(cfg: ModelConfig) -> list[Rule]:
    rules: list[Rule] = [(["tok_embeddings.weight"], "transformer.wte.weight", False),
                         (["pos_embeddings.weight"], "transformer.wpe.weight", False)]
    for i in range(cfg.num_layers):
        ours, hf = f"layers.{i}", f"transformer.h.{i}"
        add_rule(rules, [f"{ours}.attn_norm"], f"{hf}.ln_1")
        add_rule(rules, [f"{ours}.attn.{p}_proj" for p in "qkv"], f"{hf}.attn.c_attn", transpose=True)
        add_rule(rules, [f"{ours}.attn.out_proj"], f"{hf}.attn.c_proj", transpose=True)
        add_rule(rules, [f"{ours}.mlp_norm"], f"{hf}.ln_2")
        add_rule(rules, [f"{ours}.mlp.in_proj"], f"{hf}.mlp.c_fc", transpose=True)
        add_rule(rules, [f"{ours}.mlp.out_proj"], f"{hf}.mlp.c_proj", transpose=True)
    add_rule(rules, ["norm"], "transformer.ln_f")
    rules.append((["output.weight"], "lm_head.weight", False))
    return rules


def config_to_hf(cfg: ModelConfig, tokens: dict[str, Optional[int]]) -> Any:
    check_no_sliding_window(cfg)
    if cfg.num_kv_heads != cfg.num_heads:
        raise ConfigError("HF GPT-2 has no grouped-query attention: set model.num_kv_heads to 0")
    return import_transformers().GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_seq_len, n_embd=cfg.dim, n_layer=cfg.num_layers,
        n_head=cfg.num_heads, n_inner=cfg.hidden_dim, activation_function="gelu_pytorch_tanh",
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        layer_norm_epsilon=cfg.norm_eps, initializer_range=cfg.init_std,
        tie_word_embeddings=cfg.tie_embeddings, **tokens)


def config_from_hf(config: Any) -> ModelConfig:
    if config.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ConfigError(f"HF GPT-2 activation '{config.activation_function}' is not supported (tanh GELU only)")
    if config.scale_attn_by_inverse_layer_idx or config.reorder_and_upcast_attn:
        raise ConfigError("HF GPT-2 options scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn "
                          "are not supported")
    return resolve_model_config(ModelConfig(
        family="gpt2", vocab_size=config.vocab_size, max_seq_len=config.n_positions, dim=config.n_embd,
        num_layers=config.n_layer, num_heads=config.n_head, hidden_dim=config.n_inner or 4 * config.n_embd,
        norm_eps=config.layer_norm_epsilon, tie_embeddings=config.tie_word_embeddings, bias=True,
        init_std=config.initializer_range))


FAMILY = register_family(Family(
    name="gpt2", summary="learned positions, LayerNorm, GELU", blocks=BLOCKS, heads=CAUSAL_HEADS,
    build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS, generation="causal",
    validate=check_one_stack, hf=rule_mapping("gpt2", "GPT2LMHeadModel", hf_rules, config_to_hf, config_from_hf,
                                               bases={"GPT2Model": "transformer."})))
