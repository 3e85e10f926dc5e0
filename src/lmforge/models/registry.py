"""The model family registry: each family registers, in its own file under
``lmforge.models.families``, everything the rest of lmforge needs to know about it.

A `Family` names its blocks, presets, config checks, default widths, how to build each of
its heads, its pretraining task, how it generates, its sizing terms and its Hugging Face
mapping. Code elsewhere asks the family (``get_family(cfg.family).build(cfg, head)``) instead
of branching on its name, so adding a family is adding one file that calls `register_family`.

This module imports nothing from lmforge but `lmforge.errors`, so `lmforge.config` can
consult it (family names, presets, a model's size before it is built) without an import
cycle; the family files are imported on the first call to `families()`. That is also why the
parameter formulas live here rather than in `lmforge.models.sizing` (which builds models).
"""

from __future__ import annotations

import dataclasses
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
      differs from one stack of blocks (None = `stack_parameters` / ``cfg.num_layers``; see
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

    def with_derived_fields(self, cfg: "ModelConfig") -> "ModelConfig":
        """``cfg`` with its 0-means-derived fields filled: ``num_kv_heads`` 0 -> ``num_heads``,
        ``hidden_dim`` 0 -> ``default_hidden_dim``."""
        cfg = dataclasses.replace(cfg, num_kv_heads=cfg.num_kv_heads or cfg.num_heads)
        return dataclasses.replace(cfg, hidden_dim=cfg.hidden_dim or self.default_hidden_dim(cfg))

    def estimate_parameters(self, cfg: "ModelConfig") -> int:
        """Weight-matrix and embedding parameters by formula (``sizing.approx_parameters``),
        for a config with its derived fields filled; nothing is checked or built."""
        if self.approx_parameters is not None:
            return self.approx_parameters(cfg)
        return stack_parameters(cfg, self.blocks)

    def rope_table_elements(self, cfg: "ModelConfig") -> int:
        """Elements of the fp32 RoPE cos/sin tables precomputed for every position (0 without RoPE)."""
        return 2 * cfg.max_seq_len * (cfg.dim // cfg.num_heads) if self.blocks.positions == "rope" else 0

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


# --------------------------------------------------------------------------- parameter formulas


def block_weights(cfg: "ModelConfig", gated: bool) -> tuple[int, int]:
    """(attention, MLP) weight-matrix parameters of one block: q, k, v, o and two (three when
    ``gated``) MLP matrices."""
    head_dim = cfg.head_dim or cfg.dim // cfg.num_heads
    width, kv_width = cfg.num_heads * head_dim, cfg.num_kv_heads * head_dim  # query heads, key/value heads
    return 2 * cfg.dim * width + 2 * cfg.dim * kv_width, (3 if gated else 2) * cfg.dim * cfg.hidden_dim


def embedding_parameters(cfg: "ModelConfig", blocks: "BlockSpec") -> int:
    """The token table, an untied output head and learned positions."""
    total = cfg.vocab_size * cfg.dim * (1 if cfg.tie_embeddings else 2)
    if blocks.positions == "learned":
        total += cfg.max_seq_len * cfg.dim
    return total


def stack_parameters(cfg: "ModelConfig", blocks: "BlockSpec") -> int:
    """The parameters by formula of one stack of ``cfg.num_layers`` blocks with its embeddings and head."""
    attention, mlp = block_weights(cfg, gated=blocks.mlp in ("swiglu", "geglu"))
    return embedding_parameters(cfg, blocks) + cfg.num_layers * (attention + mlp)
