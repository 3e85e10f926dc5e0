"""Mistral 7B (Jiang et al. 2023): the Llama blocks with grouped-query and sliding-window attention.

The window comes from `sliding_window` in the config (4096 in mistral-7b): each query attends
to itself and the W-1 keys before it, so information travels W positions per layer and
L·W positions through the stack. Grouped-query attention comes from `num_kv_heads`.
"""

from __future__ import annotations

from typing import Any, Optional

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.interop.hf import check_head_dim, import_transformers, plain_rope_theta, rule_mapping
from lmforge.models.blocks import BlockSpec
from lmforge.models.families import llama
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, swiglu_hidden_dim, transformer_builder
from lmforge.models.presets import resolve_model_config
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="rmsnorm", mlp="swiglu", positions="rope")

_MISTRAL = {"family": "mistral", "bias": False, "norm_eps": 1e-5, "tie_embeddings": False}
PRESETS = {
    "mistral-tiny": {**_MISTRAL, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                     "num_heads": 4, "num_kv_heads": 2, "sliding_window": 8},
    # The window is half the context so that training exercises it.
    "mistral-quickstart": {**_MISTRAL, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8,
                           "num_kv_heads": 4, "multiple_of": 64, "sliding_window": 128, "tie_embeddings": True},
    # Mistral 7B v0.1 (7,241,732,096 parameters): 4096-token window, 32k positions.
    "mistral-7b": {**_MISTRAL, "vocab_size": 32000, "max_seq_len": 32768, "dim": 4096, "num_layers": 32,
                   "num_heads": 32, "num_kv_heads": 8, "hidden_dim": 14336, "sliding_window": 4096},
}


def config_to_hf(cfg: ModelConfig, tokens: dict[str, Optional[int]]) -> Any:
    if cfg.bias:
        raise ConfigError("HF Mistral has no biases: set model.bias false")
    return import_transformers().MistralConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.dim // cfg.num_heads, hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        sliding_window=cfg.sliding_window or None, attention_dropout=cfg.dropout,
        initializer_range=cfg.init_std, tie_word_embeddings=cfg.tie_embeddings, **tokens)


def config_from_hf(config: Any) -> ModelConfig:
    check_head_dim(config, "Mistral")
    return resolve_model_config(ModelConfig(
        family="mistral", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
        dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads or config.num_attention_heads,
        hidden_dim=config.intermediate_size, norm_eps=config.rms_norm_eps,
        rope_theta=plain_rope_theta(config), sliding_window=config.sliding_window or 0,
        tie_embeddings=config.tie_word_embeddings, bias=False, init_std=config.initializer_range))


FAMILY = register_family(Family(
    name="mistral", summary="llama + sliding-window attention", blocks=BLOCKS, heads=CAUSAL_HEADS,
    build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS, generation="causal",
    validate=check_one_stack, default_hidden_dim=swiglu_hidden_dim,
    # HF Mistral names its tensors as HF Llama does
    hf=rule_mapping("mistral", "MistralForCausalLM", llama.hf_rules, config_to_hf, config_from_hf,
                    bases={"MistralModel": "model."})))
