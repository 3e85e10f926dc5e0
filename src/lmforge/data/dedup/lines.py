"""Line- or paragraph-level deduplication across the corpus.

Boilerplate (navigation menus, cookie notices, licence headers) repeats across documents
that are otherwise different, so document-level dedup keeps it. This step removes from each
document every line (or paragraph) whose normalised text already occurred in an *earlier*
document in corpus order; the first occurrence stays where it is, and repeats inside one
document are left alone (that is the repetition filters' job). Units whose normalised text
is shorter than ``min_chars`` are never removed, so "}" or an empty line survives. A
document left with nothing but whitespace is dropped as ``empty_after_line_dedup``.

Fingerprint: one 64-bit blake2b hash per unit (0 for a unit too short to count).
Decision: the indices of the units to remove.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Optional, Union

import numpy as np

from lmforge.config import option
from lmforge.data.dedup.hashing import digest64
from lmforge.data.dedup.normalize import normalize_text
from lmforge.data.document import Document
from lmforge.data.steps import CorpusStep, DocRef, Drop, register_step
from lmforge.errors import ConfigError

# A capture group, so re.split also returns the separators and the text can be rebuilt exactly.
_SEPARATORS = {
    "line": re.compile(r"(\n)"),
    "paragraph": re.compile(r"(\n(?:[ \t\r\f\v]*\n)+)"),  # one or more blank lines
}


@dataclass
class LineDedupOptions:
    """Options of ``line_dedup``."""

    unit: Literal["line", "paragraph"] = option("line", "what is deduplicated: lines, or paragraphs "
                                                "(text between blank lines)")
    min_chars: int = option(10, "units shorter than this after normalisation are never removed")
    strip_punctuation: bool = option(False, "also ignore punctuation and symbols when comparing units")


def split_units(text: str, unit: str) -> tuple[list[str], list[str]]:
    """Split ``text`` into units and the separators between them (``len(separators) == len(units) - 1``)."""
    parts = _SEPARATORS[unit].split(text)
    return parts[0::2], parts[1::2]


def join_units(units: list[str], separators: list[str], remove: Iterable[int]) -> str:
    """Rebuild the text without the units at ``remove``; each kept unit keeps the separator before it."""
    removed = set(remove)
    pieces: list[str] = []
    for index, unit in enumerate(units):
        if index in removed:
            continue
        if pieces:
            pieces.append(separators[index - 1])
        pieces.append(unit)
    return "".join(pieces)


@register_step("line_dedup", LineDedupOptions,
               "remove lines (or paragraphs) already seen in an earlier document; drop documents left empty")
class LineDedup(CorpusStep):
    """Remove units seen in earlier documents; the decision for a document is the unit indices to remove."""

    def __init__(self, options: LineDedupOptions) -> None:
        if options.min_chars < 1:
            raise ConfigError(f"line_dedup option 'min_chars' must be >= 1, got {options.min_chars}")
        self.options = options

    def fingerprint(self, doc: Document) -> bytes:
        units, _ = split_units(doc.text, self.options.unit)
        hashes = np.zeros(len(units), dtype=np.uint64)
        for index, unit in enumerate(units):
            normalised = normalize_text(unit, strip_punctuation=self.options.strip_punctuation)
            if len(normalised) >= self.options.min_chars:
                hashes[index] = digest64(normalised) or 1  # 0 means "too short"
        return hashes.tobytes()

    def decide(self, fingerprints: Iterable[tuple[DocRef, bytes]]) -> dict[DocRef, tuple[int, ...]]:
        """Map each affected document's ``DocRef`` to the indices of its units seen in earlier documents."""
        seen: set[int] = set()
        decisions: dict[DocRef, tuple[int, ...]] = {}
        # Sorted so "earlier" means corpus order even if the runner hands fingerprints over unsorted.
        for ref, fingerprint in sorted(fingerprints, key=lambda entry: entry[0]):
            hashes = np.frombuffer(fingerprint, dtype=np.uint64).tolist()
            repeated = tuple(index for index, value in enumerate(hashes) if value and value in seen)
            if repeated:
                decisions[ref] = repeated
            seen.update(value for value in hashes if value)
        return decisions

    def apply(self, doc: Document, decision: Optional[tuple[int, ...]]) -> Union[Document, Drop]:
        if not decision:
            return doc
        units, separators = split_units(doc.text, self.options.unit)
        text = join_units(units, separators, decision)
        if not text.strip():
            detail = f"{len(decision)} {self.options.unit}s seen earlier, nothing left"
            return Drop("empty_after_line_dedup", detail=detail)
        return Document(doc.id, text, dict(doc.meta))
