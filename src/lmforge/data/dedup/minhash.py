"""Near-duplicate removal with MinHash LSH, FineWeb's settings (../shared/REFERENCE.md "Deduplication").

Per document (in the workers): normalise the text (NFKC, casefold, punctuation stripped,
digits mapped to 0), split into words, hash every word 5-gram ("shingle"), and take the
MinHash signature: 112 minima under hash functions ``(a*h + b) mod (2**61 - 1)``. The
signature is cut into 14 bands of 8 rows and each band hashed to a 64-bit key; only those
keys (112 bytes) and, when ``verify_threshold`` is set, the signature's low 32 bits per value
(448 bytes; a chance agreement of two different minima is then 2**-32) travel to the driver.

In the driver: the keys (and signatures) sit in numpy arrays, not in a dict entry per key,
and per band one stable argsort groups the documents that share a key. Those are candidates,
joined transitively with union-find; the first document of each cluster in corpus order
(lowest ``DocRef``) is kept, the rest are dropped as ``near_duplicate`` naming the kept id.
A pair of Jaccard similarity s shares a band with probability 1 - (1 - s**8)**14 (0.56 at
0.7, 0.92 at 0.8): FineWeb's target is s >= 0.75.

Short and empty documents: a document with fewer words than ``ngram_size`` has one shingle,
all of its words, so it still matches its exact (normalised) copies; a document with no
words at all after normalisation has no signature and never matches anything (use
``exact_dedup`` for those). Words are whitespace-separated tokens, so for scripts written
without spaces (Chinese, Japanese, Thai) a whole clause is one "word" and only long shared
runs of text are detected; FineWeb uses a word tokenizer per language there.

``verify_threshold`` (default 0.75) unions a candidate pair only when the full signatures'
estimated Jaccard reaches it; ``null`` gives FineWeb's unverified LSH. Why 0.75 by default:
unverified 14 x 8 LSH flags pairs well below FineWeb's 0.75 target (21% at s=0.6, 56% at
s=0.7), and on benchmarks/dedup.py's planted near-duplicates (4,484 documents, 1,484 pairs
with true Jaccard spread over 0.5..0.95, truth = s >= 0.75) that costs precision: F1 0.80
(P 0.69, R 0.95) unverified against 0.91 (P 0.90, R 0.91) with verification at 0.75, the
best of 0.70..0.80 (0.76 ties). The price is the signature travelling with the band keys
(560 instead of 112 bytes per document) and a few comparisons per bucket in the driver.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from lmforge.config import option
from lmforge.data.dedup.hashing import ngram_hashes, word_hashes
from lmforge.data.dedup.normalize import normalize_text
from lmforge.data.dedup.signature import band_keys, minhash_signature, permutation_parameters
from lmforge.data.dedup.unionfind import UnionFind
from lmforge.data.document import Document
from lmforge.data.steps import CorpusStep, DocRef, Drop, register_step
from lmforge.errors import ConfigError


@dataclass
class MinHashDedupOptions:
    """Options of ``minhash_dedup``: FineWeb's 5-grams and 14 bands x 8 rows, plus verification."""

    ngram_size: int = option(5, "words per shingle")
    num_bands: int = option(14, "LSH bands; a pair sharing any one band is a candidate")
    rows_per_band: int = option(8, "signature rows per band (num_bands * rows_per_band hash functions)")
    seed: int = option(1, "seed of the hash functions; must be the same for every worker of a run")
    verify_threshold: Optional[float] = option(
        0.75, "join a candidate pair only if the signatures' estimated Jaccard is at least this "
        "(null = FineWeb's unverified LSH, which also joins many pairs below 0.75)")
    strip_punctuation: bool = option(True, "ignore punctuation and symbols (FineWeb normalisation)")
    normalize_digits: bool = option(True, "map every digit to 0 before shingling (FineWeb normalisation)")


@dataclass(frozen=True)
class MinHashFingerprint:
    """One document's contribution to the driver: id, band keys, optional signature.

    ``band_keys`` is ``num_bands`` uint64 keys as bytes, or empty for a document with no words;
    ``signature`` is the signature's low 32 bits (uint32 bytes) when verification is on, else empty.
    """

    doc_id: str
    band_keys: bytes
    signature: bytes = b""


@register_step("minhash_dedup", MinHashDedupOptions,
               "drop near-duplicates: MinHash LSH over word 5-grams, 14 bands x 8 rows (FineWeb)")
class MinHashDedup(CorpusStep):
    """Cluster documents that share an LSH band; keep the first of each cluster in corpus order."""

    def __init__(self, options: MinHashDedupOptions) -> None:
        for name in ("ngram_size", "num_bands", "rows_per_band"):
            if getattr(options, name) < 1:
                raise ConfigError(f"minhash_dedup option '{name}' must be >= 1, got {getattr(options, name)}")
        threshold = options.verify_threshold
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ConfigError(f"minhash_dedup option 'verify_threshold' must be in (0, 1] or null, got {threshold}")
        self.options = options
        self.num_perm = options.num_bands * options.rows_per_band
        self.perm_a, self.perm_b = permutation_parameters(self.num_perm, options.seed)

    def signature(self, text: str) -> Optional[np.ndarray]:
        """The uint64 MinHash signature of ``text``, or None when it has no words after normalisation."""
        normalised = normalize_text(text, strip_punctuation=self.options.strip_punctuation,
                                    normalize_digits=self.options.normalize_digits)
        shingles = ngram_hashes(word_hashes(normalised), self.options.ngram_size)
        if shingles.size == 0:
            return None
        return minhash_signature(shingles, self.perm_a, self.perm_b)

    def fingerprint(self, doc: Document) -> MinHashFingerprint:
        signature = self.signature(doc.text)
        if signature is None:
            return MinHashFingerprint(doc.id, b"")
        keys = band_keys(signature, self.options.num_bands, self.options.rows_per_band).tobytes()
        low_bits = signature.astype(np.uint32).tobytes() if self.options.verify_threshold is not None else b""
        return MinHashFingerprint(doc.id, keys, low_bits)

    def decide(self, fingerprints: Iterable[tuple[DocRef, MinHashFingerprint]]) -> dict[DocRef, str]:
        """Map each near-duplicate's ``DocRef`` to the id of its cluster's first document.

        Entries are sorted by ``DocRef`` first, so the kept document is the first in corpus
        order even if the runner hands fingerprints over in another order.
        """
        entries = sorted(fingerprints, key=lambda entry: entry[0])
        # Rows: the documents that have a signature, in corpus order (row order = doc order).
        docs_of_rows = [index for index, (_, fp) in enumerate(entries) if fp.band_keys]
        num_rows, num_bands = len(docs_of_rows), self.options.num_bands
        keys = np.frombuffer(b"".join(entries[i][1].band_keys for i in docs_of_rows),
                             dtype=np.uint64).reshape(num_rows, num_bands)
        threshold = self.options.verify_threshold
        signatures = None
        if threshold is not None:
            signatures = np.frombuffer(b"".join(entries[i][1].signature for i in docs_of_rows),
                                       dtype=np.uint32).reshape(num_rows, self.num_perm)
        clusters = UnionFind(num_rows)
        for band in range(num_bands):
            for bucket in shared_key_runs(keys[:, band]):
                if signatures is None:
                    for row in bucket[1:]:
                        clusters.union(bucket[0], row)
                else:
                    self._join_verified(bucket, signatures, clusters, threshold)
        decisions: dict[DocRef, str] = {}
        for row, doc_index in enumerate(docs_of_rows):
            root = clusters.find(row)
            if root != row:
                decisions[entries[doc_index][0]] = entries[docs_of_rows[root]][1].doc_id
        return decisions

    def _join_verified(self, bucket: list[int], signatures: np.ndarray, clusters: UnionFind,
                       threshold: float) -> None:
        """Union the rows of one bucket whose estimated Jaccard reaches ``threshold``.

        Verified similarity is not transitive (a~b and a~c says nothing of b~c), so each row is
        checked against every group of earlier rows it is not yet joined to; a group's first
        row is tried first, which settles the common case (many copies of one page) in one
        comparison instead of one per copy.
        """
        groups: list[list[int]] = []
        for row in bucket:
            joined, apart = [row], []
            for group in groups:
                if clusters.find(group[0]) == clusters.find(row) or self._verifies(row, group, signatures, threshold):
                    clusters.union(group[0], row)
                    joined.extend(group)
                else:
                    apart.append(group)
            groups = apart + [joined]

    def _verifies(self, row: int, group: list[int], signatures: np.ndarray, threshold: float) -> bool:
        signature = signatures[row]
        if np.count_nonzero(signatures[group[0]] == signature) / self.num_perm >= threshold:
            return True
        if len(group) == 1:
            return False
        matches = np.count_nonzero(signatures[group[1:]] == signature, axis=1)
        return bool((matches / self.num_perm >= threshold).any())

    def apply(self, doc: Document, decision: Optional[str]) -> Union[Document, Drop]:
        if decision is None:
            return doc
        return Drop("near_duplicate", detail=f"of {decision}")


def shared_key_runs(column: np.ndarray) -> list[list[int]]:
    """Groups of row indices (ascending) that share a key in ``column``; singletons are left out.

    One stable argsort: equal keys end up adjacent and keep their row order, so each group's
    first index is its earliest document.
    """
    order = np.argsort(column, kind="stable")
    ordered = column[order]
    boundaries = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [column.size]))
    return [order[start:end].tolist() for start, end in zip(starts.tolist(), ends.tolist()) if end - start > 1]
