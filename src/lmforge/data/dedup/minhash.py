"""Near-duplicate removal with MinHash LSH, FineWeb's settings (../shared/REFERENCE.md "Deduplication").

Per document (in the workers): normalise the text (NFKC, casefold, punctuation stripped,
digits mapped to 0), split into words, hash every word 5-gram ("shingle"), and take the
MinHash signature: 112 minima under hash functions ``(a*h + b) mod (2**61 - 1)``. The
signature is cut into 14 bands of 8 rows and each band hashed to a 16-byte key; only those
keys (and the signature itself when ``verify_threshold`` is set) travel to the driver.

In the driver: documents sharing any band key are candidates and are joined transitively
with union-find; the first document of each cluster in corpus order (lowest ``DocRef``) is
kept, the rest are dropped as ``near_duplicate`` naming the kept id. A pair of Jaccard
similarity s shares a band with probability 1 - (1 - s**8)**14 (0.56 at 0.7, 0.92 at 0.8):
FineWeb's target is s >= 0.75.

Short and empty documents: a document with fewer words than ``ngram_size`` has one shingle,
all of its words, so it still matches its exact (normalised) copies; a document with no
words at all after normalisation has no signature and never matches anything (use
``exact_dedup`` for those).

``verify_threshold`` (default 0.75) unions a candidate pair only when the full signatures'
estimated Jaccard reaches it; ``null`` gives FineWeb's unverified LSH. Why 0.75 by default:
unverified 14 x 8 LSH flags pairs well below FineWeb's 0.75 target (21% at s=0.6, 56% at
s=0.7), and on benchmarks/dedup.py's planted near-duplicates (4,484 documents, 1,484 pairs
with true Jaccard spread over 0.5..0.95, truth = s >= 0.75) that costs precision: F1 0.80
(P 0.69, R 0.95) unverified against 0.91 (P 0.90, R 0.91) with verification at 0.75, the
best of 0.70..0.80 (0.76 ties). The price is the signature travelling with the band keys
(1,120 instead of 224 bytes per document) and a few comparisons per bucket in the driver.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from lmforge.config import option
from lmforge.data.dedup.hashing import ngram_hashes, word_hashes
from lmforge.data.dedup.normalize import normalize_text
from lmforge.data.dedup.signature import (band_keys, estimated_jaccard, minhash_signature,
                                          permutation_parameters)
from lmforge.data.dedup.unionfind import UnionFind
from lmforge.data.document import Document
from lmforge.data.steps import CorpusStep, DocRef, Drop, register_step
from lmforge.errors import ConfigError

_KEY_BYTES = 16


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
    """One document's contribution to the driver: id, concatenated band keys, optional signature.

    ``band_keys`` is ``num_bands * 16`` bytes, or empty for a document with no words;
    ``signature`` is the uint64 signature's bytes when verification is on, else empty.
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
        keys = b"".join(band_keys(signature, self.options.num_bands, self.options.rows_per_band))
        kept_signature = signature.tobytes() if self.options.verify_threshold is not None else b""
        return MinHashFingerprint(doc.id, keys, kept_signature)

    def decide(self, fingerprints: Iterable[tuple[DocRef, MinHashFingerprint]]) -> dict[DocRef, str]:
        """Map each near-duplicate's ``DocRef`` to the id of its cluster's first document.

        Entries are sorted by ``DocRef`` first, so the kept document is the first in corpus
        order even if the runner hands fingerprints over in another order.
        """
        entries = sorted(fingerprints, key=lambda entry: entry[0])
        clusters = UnionFind(len(entries))
        if self.options.verify_threshold is None:
            self._join_candidates(entries, clusters)
        else:
            self._join_verified(entries, clusters, self.options.verify_threshold)
        decisions: dict[DocRef, str] = {}
        for index, (ref, _) in enumerate(entries):
            root = clusters.find(index)
            if root != index:
                decisions[ref] = entries[root][1].doc_id
        return decisions

    def _band_keys(self, fingerprint: MinHashFingerprint) -> list[bytes]:
        keys = fingerprint.band_keys
        return [keys[i:i + _KEY_BYTES] for i in range(0, len(keys), _KEY_BYTES)]

    def _join_candidates(self, entries: list[tuple[DocRef, MinHashFingerprint]], clusters: UnionFind) -> None:
        # Joining each document to the first member of each of its buckets connects the
        # whole bucket, so one int per bucket is all the memory this needs.
        first_in_bucket: dict[bytes, int] = {}
        for index, (_, fingerprint) in enumerate(entries):
            for key in self._band_keys(fingerprint):
                first = first_in_bucket.setdefault(key, index)
                if first != index:
                    clusters.union(first, index)

    def _join_verified(self, entries: list[tuple[DocRef, MinHashFingerprint]], clusters: UnionFind,
                       threshold: float) -> None:
        # Verified pairs are not transitive within a bucket (a~b and a~c says nothing of
        # b~c), so each document is compared with every bucket member not yet in its cluster.
        members: dict[bytes, list[int]] = {}
        signatures = [np.frombuffer(fp.signature, dtype=np.uint64) for _, fp in entries]
        for index in range(len(entries)):
            for key in self._band_keys(entries[index][1]):
                bucket = members.setdefault(key, [])
                for other in bucket:
                    if clusters.find(other) == clusters.find(index):
                        continue
                    if estimated_jaccard(signatures[index], signatures[other]) >= threshold:
                        clusters.union(other, index)
                bucket.append(index)

    def apply(self, doc: Document, decision: Optional[str]) -> Union[Document, Drop]:
        if decision is None:
            return doc
        return Drop("near_duplicate", detail=f"of {decision}")
