"""The contract between the data pipeline and its steps (cleaners, filters, maskers, dedup).

A pipeline (``lmforge data run``) is an ordered list of steps written in YAML as mappings
``{step: NAME, ...options}``. Each NAME is registered here with a typed options dataclass,
so a YAML step is validated exactly like every other lmforge config (unknown key or bad
value: one line naming it).

Two kinds of step:

- ``DocStep``: looks at one document at a time (clean, filter, mask PII). ``__call__``
  returns the document to keep (possibly with new text or extra ``meta``), or a ``Drop``
  with a short reason code. The pipeline counts ``in``, ``kept`` and ``dropped`` by reason
  for every step, and writes dropped documents with step and reason to the rejects file.
- ``CorpusStep``: needs to see the whole corpus before it can decide (deduplication).
  It runs in three passes so that shard workers do the heavy work in parallel:
  1. ``fingerprint(doc)`` in the shard workers (picklable result, e.g. a MinHash signature);
  2. ``decide(fingerprints)`` once, in the driver, over every ``(DocRef, fingerprint)`` in
     corpus order (shard index, then position in the shard): returns a decision for the
     documents it affects only (the first occurrence is kept, so the choice is deterministic);
  3. ``apply(doc, decision)`` in the shard workers: a ``Drop`` or a changed document.

Steps are constructed once per worker as ``StepClass(options)``; they must be picklable
(plain attributes), and must not keep state between documents (a worker may see any shard).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Union

from lmforge.data.document import Document
from lmforge.errors import ConfigError
from lmforge.kinds import KindRegistry, KindSpec


@dataclass(frozen=True)
class Drop:
    """A step's verdict to drop a document. ``reason`` is a short code (``too_few_words``)."""

    reason: str
    detail: str = ""  # optional human-readable measured value, e.g. "12 words < 50"


class DocRef(NamedTuple):
    """Where a document sits in the corpus: its input shard and its position in that shard."""

    shard: int
    position: int


class DocStep:
    """One document in, one document (kept, maybe changed) or a ``Drop`` out."""

    name: str = ""

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        raise NotImplementedError


class CorpusStep:
    """A step that must see every document before deciding (dedup); see the module docstring."""

    name: str = ""

    def fingerprint(self, doc: Document) -> Any:
        raise NotImplementedError

    def decide(self, fingerprints: Iterable[tuple[DocRef, Any]]) -> dict[DocRef, Any]:
        raise NotImplementedError

    def apply(self, doc: Document, decision: Any) -> Union[Document, Drop]:
        raise NotImplementedError


Step = Union[DocStep, CorpusStep]


StepSpec = KindSpec  # name, options_cls, cls (the step class), summary

# Modules whose import registers steps (listed, not discovered: `lmforge.kinds`).
_STEPS = KindRegistry("data step", (
    "lmforge.data.clean",
    "lmforge.data.filters.heuristics",
    "lmforge.data.filters.gopher",
    "lmforge.data.filters.c4",
    "lmforge.data.filters.fineweb",
    "lmforge.data.safety.blocklist",
    "lmforge.data.safety.pii",
    "lmforge.data.safety.classifier",
    "lmforge.data.dedup.exact",
    "lmforge.data.dedup.minhash",
    "lmforge.data.dedup.lines",
))


def register_step(name: str, options_cls: type, summary: str) -> Callable[[type], type]:
    """Class decorator: make ``StepClass(options)`` available in pipelines as ``step: name``."""
    return _STEPS.register(name, options_cls, summary)


def registered_steps() -> dict[str, StepSpec]:
    return _STEPS.all()


def build_step(entry: Any, index: int) -> Step:
    """Build the step of one YAML entry ``{step: NAME, ...options}``; ConfigError on a mistake."""
    from lmforge.config import _build  # the same validation as every config

    key = f"steps[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("step"), str):
        raise ConfigError(f"config key '{key}': expected a mapping with 'step: NAME', got {entry!r}")
    steps = registered_steps()
    name = entry["step"]
    if name not in steps:
        raise ConfigError(f"config key '{key}.step': unknown data step {name!r}; "
                          f"choose one of {', '.join(steps)}")
    spec = steps[name]
    options = _build(spec.options_cls, {k: v for k, v in entry.items() if k != "step"}, prefix=key + ".")
    return spec.cls(options)

