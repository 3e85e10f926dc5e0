"""Deterministic hashes for dedup: the same text gives the same hash in every process.

Python's built-in ``hash()`` of a string is salted per process (PYTHONHASHSEED), so a
fingerprint made in one worker would not match the same text in another: every hash here is
either a keyed-free blake2b digest or plain integer arithmetic on the UTF-8 bytes.

``word_hashes`` is the vectorised path MinHash needs (one hash per word of a document, no
Python loop per word): a polynomial hash over bytes computed with prefix sums in wrapping
uint64 arithmetic, then passed through the splitmix64 finaliser so every output bit depends
on every input bit (a raw polynomial hash modulo 2**64 has weak low bits).
"""

from __future__ import annotations

import hashlib

import numpy as np

_U64 = np.uint64
# Odd multipliers: invertible modulo 2**64, so a prefix-sum difference can be re-based with
# the inverse power. Chosen as arbitrary large odd constants (the golden-ratio constant and
# a splitmix64 multiplier); any odd value works.
_BYTE_BASE = 0x9E3779B97F4A7C15
_BYTE_BASE_INVERSE = pow(_BYTE_BASE, -1, 1 << 64)
_WORD_BASE = 0xBF58476D1CE4E5B9
_LENGTH_SALT = 0x94D049BB133111EB


def digest64(text: str) -> int:
    """A 64-bit blake2b hash of ``text`` as a Python int (stable across processes and runs)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def digest128(text: str) -> bytes:
    """A 128-bit blake2b digest of ``text``: collisions are negligible even at 10**12 texts."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array: a bijection that spreads every bit (Steele et al. 2014)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> _U64(30))
        x = x * _U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> _U64(27))
        x = x * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def _powers(base: int, count: int) -> np.ndarray:
    """``base**0 .. base**(count-1)`` modulo 2**64 (numpy integer products wrap)."""
    powers = np.full(count, base, dtype=_U64)
    powers[0] = 1
    return np.cumprod(powers, dtype=_U64)


def word_hashes(words_text: str) -> np.ndarray:
    """One uint64 hash per word of ``words_text``, a string of words separated by single spaces.

    (``normalize_text`` produces exactly that.) Equal words get equal hashes in any document
    and any process. Returns an empty array for an empty string.
    """
    if not words_text:
        return np.empty(0, dtype=_U64)
    data = np.frombuffer(words_text.encode("utf-8"), dtype=np.uint8)
    num_bytes = data.size
    spaces = np.flatnonzero(data == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [num_bytes]))
    with np.errstate(over="ignore"):
        # prefix[i] = sum_{j<i} byte_j * B**j; a word's hash is its slice of that sum, re-based
        # to start at B**0 by multiplying with B**-start, so position in the text is forgotten.
        prefix = np.zeros(num_bytes + 1, dtype=_U64)
        np.cumsum(data.astype(_U64) * _powers(_BYTE_BASE, num_bytes), out=prefix[1:])
        inverse_at_start = _powers(_BYTE_BASE_INVERSE, num_bytes + 1)[starts]
        raw = (prefix[ends] - prefix[starts]) * inverse_at_start
        # The byte sum alone cannot tell "a" from "a\x00": fold the length in as well.
        raw = raw ^ ((ends - starts).astype(_U64) * _U64(_LENGTH_SALT))
    return mix64(raw)


def ngram_hashes(hashes: np.ndarray, ngram_size: int) -> np.ndarray:
    """Hash each run of ``ngram_size`` consecutive word hashes into one uint64 (order matters).

    A sequence shorter than ``ngram_size`` (but not empty) gives a single hash of all of it,
    so a short document still has a signature; an empty sequence gives an empty array.
    """
    count = hashes.size - ngram_size + 1
    if hashes.size == 0:
        return hashes
    if count < 1:
        ngram_size, count = hashes.size, 1
    combined = np.zeros(count, dtype=_U64)
    weight = 1
    with np.errstate(over="ignore"):
        for offset in range(ngram_size):
            combined += hashes[offset:offset + count] * _U64(weight)
            weight = (weight * _WORD_BASE) % (1 << 64)
        # Fold the n-gram length in, so a short document's single shingle (fewer words) is
        # hashed differently from the full-length n-grams.
        combined ^= _U64(ngram_size)
    return mix64(combined)
