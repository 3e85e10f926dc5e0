"""Exact deduplication: drop every document whose normalised text already occurred earlier.

"Normalised" means NFKC, case-folded, whitespace collapsed, and optionally punctuation
stripped (``normalize.normalize_text``), so copies that differ only in case or spacing are
caught. The hash is a 128-bit blake2b digest: deterministic across worker processes (never
Python's salted ``hash()``), and with 2**128 values a false match is negligible at any corpus
size, so no text is kept for verification. The first occurrence in corpus order (the lowest
``DocRef``) is kept; every other copy is dropped as ``exact_duplicate`` naming the kept id.

At scale the driver's table of digests (~100 bytes per document in a dict) can be replaced by
a Bloom filter (``bloom_false_positive_rate``): ~1.8 bytes per document at p = 1e-3, at the
price of losing a fraction p of unique documents as false duplicates, and of not knowing which
document was kept. That mode relies on the runner handing fingerprints over in corpus order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Union

from lmforge.config import option
from lmforge.data.dedup.bloom import BloomFilter
from lmforge.data.dedup.hashing import digest128
from lmforge.data.dedup.normalize import normalize_text
from lmforge.data.document import Document
from lmforge.data.steps import CorpusStep, DocRef, Drop, register_step
from lmforge.errors import ConfigError


@dataclass
class ExactDedupOptions:
    """Options of ``exact_dedup``."""

    strip_punctuation: bool = option(
        False, "also ignore punctuation and symbols when comparing (\"Hello, world!\" == \"hello world\")")
    bloom_false_positive_rate: Optional[float] = option(
        None, "if set, remember seen texts in a Bloom filter with this false-positive rate (a unique "
        "document is wrongly dropped with this probability) instead of an exact table: for corpora "
        "whose digests do not fit in the driver's memory")
    bloom_capacity: int = option(0, "documents the Bloom filter is sized for (0 = count them first)")


@dataclass(frozen=True)
class ExactFingerprint:
    """What a worker sends to the driver for one document: its id and its 16-byte text digest."""

    doc_id: str
    digest: bytes


@register_step("exact_dedup", ExactDedupOptions,
               "drop documents whose normalised text (case, spacing, Unicode form) occurred earlier")
class ExactDedup(CorpusStep):
    """Keep the first copy of each normalised text; the decision for a dropped copy is the kept id."""

    def __init__(self, options: ExactDedupOptions) -> None:
        rate = options.bloom_false_positive_rate
        if rate is not None and not 0.0 < rate < 1.0:
            raise ConfigError(f"exact_dedup option 'bloom_false_positive_rate' must be in (0, 1) or null, got {rate}")
        if options.bloom_capacity < 0:
            raise ConfigError(f"exact_dedup option 'bloom_capacity' must be >= 0, got {options.bloom_capacity}")
        self.options = options

    def fingerprint(self, doc: Document) -> ExactFingerprint:
        normalised = normalize_text(doc.text, strip_punctuation=self.options.strip_punctuation)
        return ExactFingerprint(doc.id, digest128(normalised))

    def decide(self, fingerprints: Iterable[tuple[DocRef, ExactFingerprint]]) -> dict[DocRef, str]:
        """Map each duplicate's ``DocRef`` to the id of the copy that is kept (the lowest ``DocRef``).

        The input is meant to arrive in corpus order; if it does not, the lowest ``DocRef`` is
        still the one kept, so the result never depends on the order workers finished in
        (except in Bloom filter mode, where the kept id is unknown and recorded as "").
        """
        if self.options.bloom_false_positive_rate is not None:
            return self._decide_with_bloom_filter(fingerprints, self.options.bloom_false_positive_rate)
        kept: dict[bytes, tuple[DocRef, str]] = {}
        dropped: dict[DocRef, bytes] = {}
        for ref, fingerprint in fingerprints:
            first = kept.get(fingerprint.digest)
            if first is None:
                kept[fingerprint.digest] = (ref, fingerprint.doc_id)
            elif ref < first[0]:  # out of order: this one came first in the corpus
                kept[fingerprint.digest] = (ref, fingerprint.doc_id)
                dropped[first[0]] = fingerprint.digest
            else:
                dropped[ref] = fingerprint.digest
        return {ref: kept[digest][1] for ref, digest in dropped.items()}

    def _decide_with_bloom_filter(self, fingerprints: Iterable[tuple[DocRef, ExactFingerprint]],
                                  false_positive_rate: float) -> dict[DocRef, str]:
        capacity = self.options.bloom_capacity
        if capacity == 0:
            fingerprints = list(fingerprints)
            capacity = len(fingerprints)
        seen = BloomFilter(max(1, capacity), false_positive_rate)
        return {ref: "" for ref, fingerprint in fingerprints if seen.add(fingerprint.digest)}

    def apply(self, doc: Document, decision: Optional[str]) -> Union[Document, Drop]:
        if decision is None:
            return doc
        return Drop("exact_duplicate", detail=f"of {decision}" if decision else "of an earlier document (Bloom filter)")
