"""Bottom-k sketches of shingle-hash sets and their Jaccard estimate (Broder 1997; Cohen & Kaplan 2007).

A document's bottom-k sketch is the ``k`` smallest distinct values of its shingle hashes. For
two documents A and B, the ``k`` smallest values of the union of their sketches are exactly
the ``k`` smallest hashes of A | B: a uniform random sample of k shingles of the union
(the hash orders shingles at random). Each sampled shingle lies in A & B with probability
J(A, B), and it is in both sketches exactly when it is in both sets (a shingle of A among
the k smallest of A | B is among the k smallest of A), so

    J ~ |{x in bottom_k(S_A | S_B) : x in S_A and x in S_B}| / k

is unbiased with standard deviation sqrt(J (1 - J) / k * (n - k) / (n - 1)) for a union of
n shingles (sampling without replacement): 0.019 at J = 0.75 for k = 512, against 0.041
for the fraction of agreeing positions of a 112-value MinHash signature. A document with
fewer than k distinct shingles has its whole set as sketch, and when both documents do, the
Jaccard computed here is exact.

Values are the top 32 bits of the 64-bit shingle hashes (``hashing.ngram_hashes``, the same
in every process). Taking the top bits keeps the order, so the sketch is the truncation of
the 64-bit bottom-k. Why 32 bits is enough: two different shingles, one only in A and one
only in B, falsely count as shared when their 32-bit values are equal. The sample covers the
lowest k / n of the hash range, so the expected number of such coincidences among the k
sampled values is at most about k * n / 2**34 (0.03 for k = 512 and a million-shingle
union, a ~6 MB document pair): a bias under 1e-4 on the estimate, at half the memory of
64-bit values (4 bytes per value, so 2 KB per document at k = 512).
"""

from __future__ import annotations

import numpy as np

_TOP32 = np.uint64(32)


def bottom_k_sketch(shingle_hashes: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest distinct top-32-bit values of ``shingle_hashes`` (uint64), sorted, as uint32.

    Fewer than ``k`` values when the document has fewer distinct shingles (then it is the
    whole set). Large documents are cut down with ``np.partition`` first (linear time).
    """
    values = (shingle_hashes >> _TOP32).astype(np.uint32)
    if values.size > 4 * k:
        # The 2k+1 smallest values, repeats included, hold every distinct value up to the
        # largest of them; if that is at least k distinct values, their k smallest are the answer.
        distinct = _sorted_distinct(np.partition(values, 2 * k)[:2 * k + 1])
        if distinct.size >= k:
            return distinct[:k]
    return _sorted_distinct(values)[:k]


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``, sorting ``values`` in place: about 4x faster on a 3 KB document's
    ~560 values (6 against 28 microseconds), which keeps the sketch at a few percent of the
    signature's time."""
    values.sort()
    first = np.empty(values.size, dtype=bool)
    first[:1] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return values[first]


def sketch_jaccard(sketch_a: np.ndarray, sketch_b: np.ndarray, k: int) -> float:
    """The bottom-k Jaccard estimate of two sketches made with the same ``k`` (sorted uint32 arrays).

    Exact when both sketches are complete (shorter than ``k``); 0.0 when both are empty.
    """
    merged = np.concatenate((sketch_a, sketch_b))
    merged.sort()
    # Each sketch has distinct values, so a value present in both appears exactly twice in a row.
    second_copy = merged[1:] == merged[:-1]
    first_of_value = np.ones(merged.size, dtype=bool)
    first_of_value[1:] = ~second_copy
    in_both = np.zeros(merged.size, dtype=bool)
    in_both[:-1] = second_copy
    shared_flags = in_both[first_of_value]  # one flag per value of the union, in increasing order
    if sketch_a.size < k and sketch_b.size < k:
        sample = shared_flags  # both sets known in full: exact Jaccard
    else:
        sample = shared_flags[:k]  # the k smallest hashes of the union
    if sample.size == 0:
        return 0.0
    return float(np.count_nonzero(sample)) / sample.size
