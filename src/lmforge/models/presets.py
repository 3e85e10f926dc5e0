"""Model families and named sizes (data, not code), and the resolution of a `ModelConfig` against them.

A preset fills the fields of `ModelConfig`; fields the user set explicitly win. Presets that
leave `vocab_size` out take it from the tokenizer (the caller sets `cfg.vocab_size`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models import bert, falcon, gpt2, llama, mistral, t5
from lmforge.models.blocks import BlockSpec

# Each family is a choice of blocks (see the family files).
FAMILIES: dict[str, BlockSpec] = {"gpt2": gpt2.BLOCKS, "llama": llama.BLOCKS, "mistral": mistral.BLOCKS,
                                  "falcon": falcon.BLOCKS, "bert": bert.BLOCKS,
                                  "t5": t5.BLOCKS}

_GPT2 = {"family": "gpt2", "bias": True, "tie_embeddings": True, "norm_eps": 1e-5}
_LLAMA = {"family": "llama", "bias": False, "norm_eps": 1e-5}
_MISTRAL = {"family": "mistral", "bias": False, "norm_eps": 1e-5, "tie_embeddings": False}
_FALCON = {"family": "falcon", "bias": False, "norm_eps": 1e-5, "num_kv_heads": 1, "tie_embeddings": True}
_BERT = {"family": "bert", "bias": True, "norm_eps": 1e-12, "tie_embeddings": True, "type_vocab_size": 2}
_T5 = {"family": "t5", "bias": False, "norm_eps": 1e-6, "tie_embeddings": True, "feed_forward": "relu"}
_T5_V1_1 = {**_T5, "tie_embeddings": False, "feed_forward": "gated-gelu"}

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny models for tests: a forward+backward takes milliseconds.
    "gpt2-tiny": {**_GPT2, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                  "num_heads": 4},
    "llama-tiny": {**_LLAMA, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                   "num_heads": 4, "num_kv_heads": 2, "tie_embeddings": False},
    "mistral-tiny": {**_MISTRAL, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                     "num_heads": 4, "num_kv_heads": 2, "sliding_window": 8},
    "falcon-tiny": {**_FALCON, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                    "num_heads": 4},
    # Sized to train in ~5 minutes on 2 CPU cores (about 3M non-embedding parameters,
    # ~25 MFLOP/token at seq 256); vocab_size comes from the tokenizer.
    "llama-quickstart": {**_LLAMA, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8,
                         "num_kv_heads": 4, "multiple_of": 64, "tie_embeddings": True},
    "gpt2-quickstart": {**_GPT2, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8},
    # The window is half the context so that training exercises it.
    "mistral-quickstart": {**_MISTRAL, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8,
                           "num_kv_heads": 4, "multiple_of": 64, "sliding_window": 128, "tie_embeddings": True},
    "falcon-quickstart": {**_FALCON, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8},
    # GPT-2 small and medium (Radford et al. 2019): 124,439,808 and 354,823,168 parameters.
    "gpt2-124m": {**_GPT2, "vocab_size": 50257, "max_seq_len": 1024, "dim": 768, "num_layers": 12,
                  "num_heads": 12},
    "gpt2-350m": {**_GPT2, "vocab_size": 50257, "max_seq_len": 1024, "dim": 1024, "num_layers": 24,
                  "num_heads": 16},
    # The shape of SmolLM-135M (a Llama-architecture model, 134.5M parameters, tied).
    "llama-135m": {**_LLAMA, "vocab_size": 49152, "max_seq_len": 2048, "dim": 576, "num_layers": 30,
                   "num_heads": 9, "num_kv_heads": 3, "hidden_dim": 1536, "tie_embeddings": True},
    # Approximately Llama 3.2 1B (1.24B parameters). Its 128k context relies on "llama3" RoPE
    # frequency scaling, which is not implemented here, so the context is the 8k of pretraining.
    "llama-1b": {**_LLAMA, "vocab_size": 128256, "max_seq_len": 8192, "dim": 2048, "num_layers": 16,
                 "num_heads": 32, "num_kv_heads": 8, "hidden_dim": 8192, "rope_theta": 500000.0,
                 "tie_embeddings": True},
    # Mistral 7B v0.1 (7,241,732,096 parameters): 4096-token window, 32k positions.
    "mistral-7b": {**_MISTRAL, "vocab_size": 32000, "max_seq_len": 32768, "dim": 4096, "num_layers": 32,
                   "num_heads": 32, "num_kv_heads": 8, "hidden_dim": 14336, "sliding_window": 4096},
    # Falcon-7B (6,921,720,704 parameters): 71 query heads of width 64 and one key/value head.
    "falcon-7b": {**_FALCON, "vocab_size": 65024, "max_seq_len": 2048, "dim": 4544, "num_layers": 32,
                  "num_heads": 71},
    # BERT (Devlin et al. 2019): a tiny encoder for tests, a CPU-sized one (vocab from the
    # tokenizer), and BERT-base (110M: 109,482,240 parameters with the pooler, as HF BertModel).
    "bert-tiny": {**_BERT, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    "bert-quickstart": {**_BERT, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 4},
    "bert-base": {**_BERT, "vocab_size": 30522, "max_seq_len": 512, "dim": 768, "num_layers": 12,
                  "num_heads": 12},
    # T5 (Raffel et al. 2020): a tiny encoder-decoder for tests, a CPU-sized one (vocab from the
    # tokenizer), t5-small (v1.0: ReLU, tied and rescaled output; 60,506,624 parameters) and
    # t5-v1_1-small (v1.1: gated GELU, untied head, 6 heads of width 64; 76,961,152), both
    # as HF T5ForConditionalGeneration counts them. max_seq_len is the training length (the
    # relative bias has no hard limit) and the longest decoder cache by default.
    "t5-tiny": {**_T5, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    "t5-quickstart": {**_T5, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 4},
    "t5-small": {**_T5, "vocab_size": 32128, "max_seq_len": 512, "dim": 512, "num_layers": 6, "num_heads": 8,
                 "hidden_dim": 2048},
    "t5-v1_1-small": {**_T5_V1_1, "vocab_size": 32128, "max_seq_len": 512, "dim": 512, "num_layers": 8,
                      "num_heads": 6, "head_dim": 64, "hidden_dim": 1024},
}

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def resolve_model_config(cfg: ModelConfig, explicit_fields: Optional[Iterable[str]] = None) -> ModelConfig:
    """Apply the preset, fill the 0-means-derived fields and validate; returns a new config.

    Precedence: dataclass defaults < preset < user values. Without `explicit_fields`, a user
    value is any field that differs from the `ModelConfig` default, so setting a field to its
    default value cannot override a preset that sets it otherwise (e.g. `max_seq_len: 256` on
    gpt2-124m keeps 1024); callers that know which keys were given pass them as
    `explicit_fields`. Resolving twice gives the same config.

    Derived fields: `num_kv_heads` 0 -> `num_heads`; `hidden_dim` 0 -> 4*dim for GELU, and for
    SwiGLU 2/3 of that (keeping the parameter count of a 4*dim GELU MLP, Shazeer 2020) rounded
    up to a multiple of `multiple_of`, as in the Llama reference code.
    """
    values = dataclasses.asdict(cfg)
    if cfg.preset:
        if cfg.preset not in PRESETS:
            raise ConfigError(f"unknown model preset '{cfg.preset}': choose one of {', '.join(PRESETS)}")
        explicit = set(explicit_fields) if explicit_fields is not None else {
            k for k, v in values.items() if v != _DEFAULTS[k]}
        values = {**_DEFAULTS, **PRESETS[cfg.preset], **{k: values[k] for k in explicit}}

    if values["family"] not in FAMILIES:
        raise ConfigError(f"model.family '{values['family']}' is unknown: choose one of {', '.join(FAMILIES)}")
    if values["num_kv_heads"] == 0:
        values["num_kv_heads"] = values["num_heads"]
    if values["hidden_dim"] == 0:
        values["hidden_dim"] = _default_hidden_dim(FAMILIES[values["family"]].mlp, values["dim"],
                                                   values["multiple_of"])
    resolved = ModelConfig(**values)
    _validate(resolved)
    return resolved


def _default_hidden_dim(mlp: str, dim: int, multiple_of: int) -> int:
    if mlp != "swiglu":
        return 4 * dim
    hidden = int(8 * dim / 3)
    return multiple_of * -(-hidden // multiple_of)


def _validate(cfg: ModelConfig) -> None:
    if cfg.vocab_size <= 0:
        raise ConfigError("model.vocab_size is 0: it must come from the tokenizer "
                          "(set model.vocab_size to the tokenizer's vocab_size, or use a preset that has one)")
    for name in ("max_seq_len", "dim", "num_layers", "num_heads", "num_kv_heads", "hidden_dim", "multiple_of"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"model.{name} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.family != "t5" and (cfg.head_dim or cfg.num_decoder_layers):
        raise ConfigError("model.head_dim and model.num_decoder_layers are t5 fields: leave them at 0 "
                          f"for family {cfg.family}")
    if cfg.family == "t5":
        _validate_t5(cfg)
    elif cfg.dim % cfg.num_heads:
        raise ConfigError(f"model.dim ({cfg.dim}) must be divisible by model.num_heads ({cfg.num_heads})")
    if cfg.num_heads % cfg.num_kv_heads:
        raise ConfigError(f"model.num_heads ({cfg.num_heads}) must be divisible by "
                          f"model.num_kv_heads ({cfg.num_kv_heads})")
    if FAMILIES[cfg.family].positions == "rope" and (cfg.dim // cfg.num_heads) % 2:
        raise ConfigError(f"RoPE needs an even head width: model.dim / model.num_heads = "
                          f"{cfg.dim // cfg.num_heads}; change dim or num_heads")
    if cfg.family == "bert" and (cfg.num_kv_heads != cfg.num_heads or cfg.sliding_window):
        raise ConfigError("model.family bert has multi-head full attention: leave model.num_kv_heads "
                          "and model.sliding_window at 0")
    if cfg.sliding_window < 0:
        raise ConfigError(f"model.sliding_window must be 0 (off) or a positive window, got {cfg.sliding_window}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.norm_eps <= 0 or cfg.init_std <= 0 or cfg.rope_theta <= 0:
        raise ConfigError("model.norm_eps, model.init_std and model.rope_theta must be positive")


def _validate_t5(cfg: ModelConfig) -> None:
    if cfg.num_kv_heads != cfg.num_heads or cfg.sliding_window or cfg.bias:
        raise ConfigError("model.family t5 has multi-head full attention and no biases: leave "
                          "model.num_kv_heads and model.sliding_window at 0 and model.bias false")
    if cfg.head_dim < 0 or cfg.num_decoder_layers < 0:
        raise ConfigError("model.head_dim and model.num_decoder_layers must be >= 0 (0 = derived)")
    if not cfg.head_dim and cfg.dim % cfg.num_heads:
        raise ConfigError(f"model.dim ({cfg.dim}) must be divisible by model.num_heads ({cfg.num_heads}), "
                          "or set model.head_dim")
    if cfg.relative_attention_num_buckets < 4 or cfg.relative_attention_max_distance <= cfg.relative_attention_num_buckets // 4:
        raise ConfigError("model.relative_attention_num_buckets must be >= 4 and "
                          "model.relative_attention_max_distance > num_buckets / 4")
