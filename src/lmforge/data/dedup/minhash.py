"""Near-duplicate removal with MinHash LSH, FineWeb's settings (Penedo et al. 2024, "The FineWeb Datasets").

Per document (in the workers): normalise the text (NFKC, casefold, punctuation stripped,
digits mapped to 0), split into words, hash every word 5-gram ("shingle"), and take the
MinHash signature: 112 minima under hash functions ``(a*h + b) mod (2**61 - 1)``. The
signature is cut into 14 bands of 8 rows and each band hashed to a 64-bit key; only those
keys (112 bytes) and, when ``verify_threshold`` is set, the bottom-k sketch of the shingle
hashes (below) travel to the driver.

In the driver: the keys sit in a numpy array, not in a dict entry per key,
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

Verification. ``verify_threshold`` (default 0.75) unions a candidate pair only when its
Jaccard, estimated from bottom-k sketches (``sketch.py``), reaches it; ``null`` gives FineWeb's
unverified LSH. Unverified 14 x 8 LSH flags pairs well below FineWeb's 0.75 target (21% at
s=0.6, 56% at s=0.7). Estimating the Jaccard from the 112-value signature (the fraction of
agreeing positions, ``verify_sketch_size: 0``) is cheap but noisy, standard deviation 0.041 at
s=0.75, so pairs near the cut-off land on the wrong side in both directions. Why bottom-k:
the shingle hashes are already computed for the signature, and keeping the k = 512 smallest
distinct ones costs one sort per document; its estimate has standard deviation 0.019 or
less at s=0.75 (less still for short documents, since it samples without replacement) and
is exact when both documents have fewer than k distinct shingles (at k = 512: up to 515
words). Only pairs that share a band are compared, so the driver's extra work stays
proportional to the candidates (about 13 microseconds a pair).
On benchmarks/dedup.py's planted near-duplicates (4,484 documents of 150-800 words, 1,484
pairs with true Jaccard spread over 0.5..0.95, truth = s >= 0.75), F1 at 0.75 is 0.80
unverified (P 0.69, R 0.95), 0.91 with the signature estimate (P 0.90, R 0.91) and 0.96 with
the bottom-512 sketch (P 0.98, R 0.95; 0.975 at k = 1024, which is exact for most of those
documents). The recall left is LSH's: pairs that share no band are never compared. The sketch
costs about 1% of the worker's time (7 of ~620 microseconds per 3 KB document, best of 9 runs).

Memory per document, what travels from a worker to the driver and sits there during
``decide``: 112 bytes of band keys, plus with verification on 4 * min(k, distinct shingles)
bytes of sketch (2,048 bytes at k = 512, i.e. 2 GB per million documents), or 448 bytes of
signature with ``verify_sketch_size: 0``.
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
from lmforge.data.dedup.sketch import bottom_k_sketch, sketch_jaccard
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
        0.75, "join a candidate pair only if its estimated Jaccard is at least this "
        "(null = FineWeb's unverified LSH, which also joins many pairs below 0.75)")
    verify_sketch_size: int = option(
        512, "k of the bottom-k shingle sketch that verification estimates the Jaccard from "
        "(4*k bytes per document in the driver; exact below k shingles); 0 = estimate from the "
        "112-value MinHash signature instead (448 bytes, ~2x noisier)")
    strip_punctuation: bool = option(True, "ignore punctuation and symbols (FineWeb normalisation)")
    normalize_digits: bool = option(True, "map every digit to 0 before shingling (FineWeb normalisation)")


@dataclass(frozen=True)
class MinHashFingerprint:
    """One document's contribution to the driver: id, band keys, what verification needs.

    ``band_keys`` is ``num_bands`` uint64 keys as bytes, or empty for a document with no words.
    With verification on, ``sketch`` is the bottom-k sketch (sorted uint32 bytes, at most
    ``verify_sketch_size`` values), or with ``verify_sketch_size: 0`` ``signature`` is the
    signature's low 32 bits (uint32 bytes; a chance agreement of two different minima is
    2**-32). Both are empty otherwise.
    """

    doc_id: str
    band_keys: bytes
    signature: bytes = b""
    sketch: bytes = b""


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
        if options.verify_sketch_size < 0:
            raise ConfigError("minhash_dedup option 'verify_sketch_size' must be >= 1, or 0 to verify with the "
                              f"MinHash signature, got {options.verify_sketch_size}")
        self.options = options
        self.num_perm = options.num_bands * options.rows_per_band
        self.perm_a, self.perm_b = permutation_parameters(self.num_perm, options.seed)

    def shingle_hashes(self, text: str) -> np.ndarray:
        """The uint64 hash of every word n-gram of ``text`` after normalisation (repeats included)."""
        normalised = normalize_text(text, strip_punctuation=self.options.strip_punctuation,
                                    normalize_digits=self.options.normalize_digits)
        return ngram_hashes(word_hashes(normalised), self.options.ngram_size)

    def signature(self, text: str) -> Optional[np.ndarray]:
        """The uint64 MinHash signature of ``text``, or None when it has no words after normalisation."""
        shingles = self.shingle_hashes(text)
        if shingles.size == 0:
            return None
        return minhash_signature(shingles, self.perm_a, self.perm_b)

    def fingerprint(self, doc: Document) -> MinHashFingerprint:
        shingles = self.shingle_hashes(doc.text)
        if shingles.size == 0:
            return MinHashFingerprint(doc.id, b"")
        signature = minhash_signature(shingles, self.perm_a, self.perm_b)
        keys = band_keys(signature, self.options.num_bands, self.options.rows_per_band).tobytes()
        if self.options.verify_threshold is None:
            return MinHashFingerprint(doc.id, keys)
        if self.options.verify_sketch_size == 0:
            return MinHashFingerprint(doc.id, keys, signature=signature.astype(np.uint32).tobytes())
        sketch = bottom_k_sketch(shingles, self.options.verify_sketch_size)
        return MinHashFingerprint(doc.id, keys, sketch=sketch.tobytes())

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
        verifier = self._verifier([entries[i][1] for i in docs_of_rows])
        clusters = UnionFind(num_rows)
        for band in range(num_bands):
            for bucket in shared_key_runs(keys[:, band]):
                if verifier is None:
                    for row in bucket[1:]:
                        clusters.union(bucket[0], row)
                else:
                    join_verified(bucket, verifier, clusters)
        decisions: dict[DocRef, str] = {}
        for row, doc_index in enumerate(docs_of_rows):
            root = clusters.find(row)
            if root != row:
                decisions[entries[doc_index][0]] = entries[docs_of_rows[root]][1].doc_id
        return decisions

    def _verifier(self, fingerprints: list[MinHashFingerprint]) -> Optional["PairVerifier"]:
        """What decides whether two candidate rows are similar enough, or None (unverified)."""
        threshold = self.options.verify_threshold
        if threshold is None:
            return None
        if self.options.verify_sketch_size == 0:
            signatures = np.frombuffer(b"".join(fp.signature for fp in fingerprints),
                                       dtype=np.uint32).reshape(len(fingerprints), self.num_perm)
            return SignatureVerifier(signatures, threshold)
        return SketchVerifier(fingerprints, self.options.verify_sketch_size, threshold)

    def apply(self, doc: Document, decision: Optional[str]) -> Union[Document, Drop]:
        if decision is None:
            return doc
        return Drop("near_duplicate", detail=f"of {decision}")


class PairVerifier:
    """Decides whether a row is similar enough to any row of a group (rows index ``decide``'s arrays)."""

    def verifies(self, row: int, group: list[int]) -> bool:
        raise NotImplementedError


class SketchVerifier(PairVerifier):
    """Bottom-k sketch Jaccard (``sketch.py``) at least ``threshold``, for rows that are candidates.

    Sketches are read from the fingerprints only when a row first meets a candidate, so the
    driver's extra cost follows the number of candidates, not of documents.
    """

    def __init__(self, fingerprints: list[MinHashFingerprint], sketch_size: int, threshold: float) -> None:
        self.fingerprints, self.sketch_size, self.threshold = fingerprints, sketch_size, threshold
        self._sketches: dict[int, np.ndarray] = {}

    def _sketch(self, row: int) -> np.ndarray:
        sketch = self._sketches.get(row)
        if sketch is None:
            sketch = self._sketches[row] = np.frombuffer(self.fingerprints[row].sketch, dtype=np.uint32)
        return sketch

    def verifies(self, row: int, group: list[int]) -> bool:
        raw = self.fingerprints[row].sketch
        for other in group:
            # Equal sketches estimate (or, when complete, are) Jaccard 1: no arithmetic needed,
            # which keeps clusters of exact copies cheap.
            if self.fingerprints[other].sketch == raw:
                return True
            if sketch_jaccard(self._sketch(row), self._sketch(other), self.sketch_size) >= self.threshold:
                return True
        return False


class SignatureVerifier(PairVerifier):
    """Fraction of agreeing signature positions (low 32 bits) at least ``threshold``."""

    def __init__(self, signatures: np.ndarray, threshold: float) -> None:
        self.signatures, self.threshold = signatures, threshold
        self.num_perm = signatures.shape[1]

    def verifies(self, row: int, group: list[int]) -> bool:
        signature = self.signatures[row]
        if np.count_nonzero(self.signatures[group[0]] == signature) / self.num_perm >= self.threshold:
            return True
        if len(group) == 1:
            return False
        matches = np.count_nonzero(self.signatures[group[1:]] == signature, axis=1)
        return bool((matches / self.num_perm >= self.threshold).any())


def join_verified(bucket: list[int], verifier: PairVerifier, clusters: UnionFind) -> None:
    """Union the rows of one bucket that ``verifier`` finds similar.

    Verified similarity is not transitive (a~b and a~c says nothing of b~c), so each row is
    checked against every group of earlier rows it is not yet joined to; a group's first
    row is tried first, which settles the common case (many copies of one page) in one
    comparison instead of one per copy.
    """
    groups: list[list[int]] = []
    for row in bucket:
        joined, apart = [row], []
        for group in groups:
            if clusters.find(group[0]) == clusters.find(row) or verifier.verifies(row, group):
                clusters.union(group[0], row)
                joined.extend(group)
            else:
                apart.append(group)
        groups = apart + [joined]


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
