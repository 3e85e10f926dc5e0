"""The model family registry: each family registers, in its own file under
``lmforge.models.families``, everything the rest of lmforge needs to know about it.

A `Family` names its blocks, presets, config checks, default widths, how to build each of
its heads, its pretraining task, how it generates, its sizing terms and its Hugging Face
mapping. Code elsewhere asks the family (``get_family(cfg.family).build(cfg, head)``) instead
of branching on its name, so adding a family is adding one file that calls `register_family`.

This module imports nothing from lmforge at module level but `lmforge.errors`, so
`lmforge.config` can consult it (family names, presets) without an import cycle; the family
files are imported on the first call to `families()`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from lmforge.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from lmforge.config import ModelConfig
    from lmforge.models.blocks import BlockSpec

FAMILIES_PACKAGE = "lmforge.models.families"


def _no_checks(cfg: "ModelConfig") -> None:
    """Families without checks of their own beyond the generic ones."""


def _four_times_dim(cfg: "ModelConfig") -> int:
    return 4 * cfg.dim


@dataclass(frozen=True)
class Family:
    """One model family, as its file registers it.

    - ``build(cfg, head)`` returns the model with head ``head`` (one of ``heads``) for a config
      already resolved (``resolve_model_config``); ``heads[0]`` is the pretraining head.
    - ``validate(cfg)`` raises ConfigError for what this family cannot build (after the
      generic checks of ``resolve_model_config``).
    - ``default_hidden_dim(cfg)`` is the MLP width when ``hidden_dim`` is 0 (the other
      fields already filled in).
    - ``generation``: "causal" (a decoder continues a prompt), "seq2seq" (an encoder reads it,
      a decoder writes the answer) or None (does not generate text).
    - ``approx_parameters(cfg)`` / ``attention_layers(cfg)``: sizing terms where this family
      differs from the pre-norm decoder stack (None = that stack's formula; see
      ``lmforge.models.sizing``).
    - ``hf``: the mapping to and from ``transformers`` (an ``lmforge.interop.hf.HFMapping``),
      None when the family has no HF counterpart.
    """

    name: str
    summary: str
    blocks: "BlockSpec"
    heads: tuple[str, ...]
    build: Callable[["ModelConfig", str], "nn.Module"]
    default_task: str
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    generation: Optional[str] = None
    validate: Callable[["ModelConfig"], None] = _no_checks
    default_hidden_dim: Callable[["ModelConfig"], int] = _four_times_dim
    approx_parameters: Optional[Callable[["ModelConfig"], int]] = None
    attention_layers: Optional[Callable[["ModelConfig"], int]] = None
    hf: Any = None

    def check_head(self, head: str) -> str:
        """``head`` if this family has it, else ConfigError naming the ones it has."""
        if head not in self.heads:
            raise ConfigError(f"model family {self.name} has no head '{head}': choose one of {', '.join(self.heads)}")
        return head


_FAMILIES: dict[str, Family] = {}
_discovered = False


def register_family(family: Family) -> Family:
    """Add ``family`` (its file calls this at import). A second family of the same name, or a
    preset name another family already has, is a bug in that file: ValueError."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"model family '{family.name}' is registered twice")
    taken = {name: other.name for other in _FAMILIES.values() if other.name != family.name for name in other.presets}
    clash = [name for name in family.presets if name in taken]
    if clash:
        raise ValueError(f"preset '{clash[0]}' of family {family.name} is already family {taken[clash[0]]}'s")
    bad = [name for name, values in family.presets.items() if values.get("family") != family.name]
    if bad:
        raise ValueError(f"preset '{bad[0]}' registered by family {family.name} names family "
                         f"{family.presets[bad[0]].get('family')!r}")
    _FAMILIES[family.name] = family
    return family


def families() -> dict[str, Family]:
    """Every registered family by name; the first call imports each module of
    ``lmforge.models.families`` (each registers itself)."""
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module(FAMILIES_PACKAGE)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not module.name.startswith("_"):
                importlib.import_module(f"{FAMILIES_PACKAGE}.{module.name}")
    return dict(_FAMILIES)


def family_names() -> list[str]:
    return list(families())


def get_family(name: str) -> Family:
    """The family called ``name``; ConfigError listing the known ones."""
    known = families()
    if name not in known:
        raise ConfigError(f"model.family '{name}' is unknown: choose one of {', '.join(known)}")
    return known[name]


def all_presets() -> dict[str, dict[str, Any]]:
    """Every family's presets by name (each a dict of ``ModelConfig`` fields, ``family`` included)."""
    return {name: dict(values) for family in families().values() for name, values in family.presets.items()}
