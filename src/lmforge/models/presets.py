"""The resolution of a `ModelConfig`: its preset merged in, derived fields filled, checked.

Presets are data each family registers with its `Family` (``lmforge.models.registry``); the
family also fills its derived fields and checks what only it cannot build. A preset fills the
fields of `ModelConfig`; fields the user set explicitly win. Presets that leave `vocab_size`
out take it from the tokenizer (the caller sets `cfg.vocab_size`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.registry import all_presets, get_family

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def resolve_model_config(cfg: ModelConfig, explicit_fields: Optional[Iterable[str]] = None) -> ModelConfig:
    """Apply the preset, fill the 0-means-derived fields and validate; returns a new config.

    Precedence: dataclass defaults < preset < user values. Without `explicit_fields`, a user
    value is any field that differs from the `ModelConfig` default, so setting a field to its
    default value cannot override a preset that sets it otherwise (e.g. `max_seq_len: 256` on
    gpt2-124m keeps 1024); callers that know which keys were given pass them as
    `explicit_fields`. Resolving twice gives the same config.

    Derived fields: `num_kv_heads` 0 -> `num_heads`; `hidden_dim` 0 -> the family's
    `default_hidden_dim` (4*dim, or for SwiGLU families 2/3 of that rounded up to a multiple
    of `multiple_of`).
    """
    values = dataclasses.asdict(cfg)
    if cfg.preset:
        presets = all_presets()
        if cfg.preset not in presets:
            raise ConfigError(f"unknown model preset '{cfg.preset}': choose one of {', '.join(presets)}")
        explicit = set(explicit_fields) if explicit_fields is not None else {
            k for k, v in values.items() if v != _DEFAULTS[k]}
        values = {**_DEFAULTS, **presets[cfg.preset], **{k: values[k] for k in explicit}}

    resolved = get_family(values["family"]).with_derived_fields(ModelConfig(**values))
    _validate(resolved)
    return resolved


def _validate(cfg: ModelConfig) -> None:
    """The generic checks, then the family's own (``Family.validate``), then those that need
    the head width the family allows."""
    if cfg.vocab_size <= 0:
        raise ConfigError("model.vocab_size is 0: it must come from the tokenizer "
                          "(set model.vocab_size to the tokenizer's vocab_size, or use a preset that has one)")
    for name in ("max_seq_len", "dim", "num_layers", "num_heads", "num_kv_heads", "hidden_dim", "multiple_of"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"model.{name} must be a positive integer, got {getattr(cfg, name)}")
    family = get_family(cfg.family)
    family.validate(cfg)
    if not cfg.head_dim and cfg.dim % cfg.num_heads:
        raise ConfigError(f"model.dim ({cfg.dim}) must be divisible by model.num_heads ({cfg.num_heads})")
    if cfg.num_heads % cfg.num_kv_heads:
        raise ConfigError(f"model.num_heads ({cfg.num_heads}) must be divisible by "
                          f"model.num_kv_heads ({cfg.num_kv_heads})")
    if family.blocks.positions == "rope" and (cfg.dim // cfg.num_heads) % 2:
        raise ConfigError(f"RoPE needs an even head width: model.dim / model.num_heads = "
                          f"{cfg.dim // cfg.num_heads}; change dim or num_heads")
    if cfg.sliding_window < 0:
        raise ConfigError(f"model.sliding_window must be 0 (off) or a positive window, got {cfg.sliding_window}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.norm_eps <= 0 or cfg.init_std <= 0 or cfg.rope_theta <= 0:
        raise ConfigError("model.norm_eps, model.init_std and model.rope_theta must be positive")


def __getattr__(name: str) -> Any:
    """``PRESETS``: every registered preset by name (``registry.all_presets``), read when asked for."""
    if name == "PRESETS":
        return all_presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
