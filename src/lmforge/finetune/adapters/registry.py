"""The registry of adapter kinds (LoRA/QLoRA, and later others): a name, a typed options
dataclass (fields made with `lmforge.config.option`, validated like any config section) and a
one-line summary, as tasks are registered (`lmforge.train.tasks.registry`).

A run's config names its adapter (``adapter.name``) and its options (``adapter.options``); a
registered class has ``apply(model, options) -> list[str]`` (the wrapped module names).
"""

from __future__ import annotations

from typing import Any, Callable

from lmforge.errors import ConfigError
from lmforge.kinds import KindRegistry, KindSpec

AdapterSpec = KindSpec  # name, options_cls, cls (has ``apply(model, options) -> list[str]``), summary

# Modules whose import registers adapters (listed, not discovered: `lmforge.kinds`).
_ADAPTERS = KindRegistry("adapter", ("lmforge.finetune.adapters.lora",))


def register_adapter(name: str, options_cls: type, summary: str) -> Callable[[type], type]:
    """Class decorator: make ``AdapterClass.apply(model, options)`` the adapter ``adapter.name: NAME``."""
    return _ADAPTERS.register(name, options_cls, summary)


def registered_adapters() -> dict[str, AdapterSpec]:
    return _ADAPTERS.all()


def adapter_spec(name: str, key: str = "adapter.name") -> AdapterSpec:
    """The registered adapter ``name``; ConfigError naming ``key`` and the known adapters otherwise."""
    adapters = registered_adapters()
    if name not in adapters:
        raise ConfigError(f"config key '{key}': unknown adapter {name!r}; choose one of {', '.join(adapters)}")
    return adapters[name]


def adapter_options(spec: AdapterSpec, options: dict[str, Any], prefix: str = "adapter.options.") -> Any:
    """``options`` checked and built into the adapter's options dataclass: an unknown key or a
    bad value is one ConfigError line naming ``prefix + key``."""
    from lmforge.config import _build

    if not isinstance(options, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}': expected a mapping of {spec.name} options, "
                          f"got {options!r}")
    return _build(spec.options_cls, dict(options), prefix=prefix)


def apply_adapter(model: Any, name: str, options: Any) -> list[str]:
    """Apply the adapter ``name`` to ``model`` in place; ``options`` is its options dataclass or
    a plain mapping (validated here). Returns the wrapped module names."""
    spec = adapter_spec(name)
    if isinstance(options, dict):
        options = adapter_options(spec, options)
    elif not isinstance(options, spec.options_cls):
        raise ConfigError(f"adapter {name!r} takes {spec.options_cls.__name__} options, got {type(options).__name__}")
    return spec.cls.apply(model, options)
