"""A Bloom filter for exact dedup at scale: set membership in ~1.8 bytes per document at p = 1e-3.

Keeping every 16-byte digest in a Python dict costs ~100 bytes per document; a Bloom filter of
``m = -n ln p / (ln 2)**2`` bits with ``k = (m / n) ln 2`` hash functions answers "seen
before?" for ``n`` items with false-positive rate ``p`` (Bloom 1970; the sizing rule minimises
the false-positive rate for a given number of bits). A false positive means a unique document is taken
for a duplicate, so ``p`` is the expected fraction of unique documents lost.
"""

from __future__ import annotations

import math


def bloom_num_bits(capacity: int, false_positive_rate: float) -> int:
    """Bits for ``capacity`` items at ``false_positive_rate``: m = -n ln p / (ln 2)^2, rounded up."""
    return max(8, math.ceil(-capacity * math.log(false_positive_rate) / math.log(2) ** 2))


def bloom_num_hashes(num_bits: int, capacity: int) -> int:
    """The optimal number of hash functions, k = (m / n) ln 2, at least 1."""
    return max(1, round(num_bits / max(1, capacity) * math.log(2)))


class BloomFilter:
    """Bits set by ``k`` indices per item, derived from a 16-byte digest by double hashing.

    Kirsch & Mitzenmacher (2006): ``h1 + i * h2`` for i < k behaves like k independent hashes,
    so one blake2b digest per item is enough.
    """

    def __init__(self, capacity: int, false_positive_rate: float) -> None:
        self.num_bits = bloom_num_bits(capacity, false_positive_rate)
        self.num_hashes = bloom_num_hashes(self.num_bits, capacity)
        self.bits = bytearray((self.num_bits + 7) // 8)  # bytearray: fast single-byte access

    def _indices(self, digest: bytes) -> list[int]:
        first = int.from_bytes(digest[:8], "little")
        second = int.from_bytes(digest[8:16], "little") | 1
        return [(first + i * second) % self.num_bits for i in range(self.num_hashes)]

    def __contains__(self, digest: bytes) -> bool:
        bits = self.bits
        return all(bits[index >> 3] & (1 << (index & 7)) for index in self._indices(digest))

    def add(self, digest: bytes) -> bool:
        """Add a 16-byte digest; return True if it was (probably) present already."""
        present = True
        bits = self.bits
        for index in self._indices(digest):
            byte, mask = index >> 3, 1 << (index & 7)
            if not bits[byte] & mask:
                present = False
                bits[byte] |= mask
        return present
