"""Text normalisation shared by the dedup steps: what counts as "the same text".

Two texts that differ only by Unicode form, case or spacing should hash alike, so every
dedup step hashes ``normalize_text(...)`` instead of the raw text. FineWeb normalises before
MinHash (lowercase, punctuation stripped, digits normalised; Penedo et al. 2024, "The
FineWeb Datasets"); exact and line dedup use the same function with the options they expose.
"""

from __future__ import annotations

import re
import unicodedata

# Punctuation and symbols (anything that is neither a word character nor whitespace), plus
# "_" which \w counts as a word character. Replaced by a space, not deleted, so words glued
# by punctuation ("end.Start", "a/b") still split into two words.
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_DIGIT = re.compile(r"\d")


def _ascii_table(strip_punctuation: bool, normalize_digits: bool) -> bytes:
    """A bytes.translate table doing, for ASCII text, what the general path does character by character."""
    table = bytearray(range(256))
    for byte in range(128):
        char = chr(byte)
        if char.isupper():
            table[byte] = ord(char.lower())
        elif char.isdigit() and normalize_digits:
            table[byte] = ord("0")
        elif strip_punctuation and not (char.isalnum() or char.isspace()):
            table[byte] = ord(" ")
    return bytes(table)


# Most web text is ASCII, where NFKC is the identity and casefold is lower(): one C-level
# bytes.translate replaces the two regex passes (about 4x faster on a 3 KB document).
_ASCII_TABLES = {(strip, digits): _ascii_table(strip, digits) for strip in (False, True) for digits in (False, True)}


def normalize_text(text: str, *, strip_punctuation: bool = False, normalize_digits: bool = False) -> str:
    """Return ``text`` in NFKC form, case-folded, with runs of whitespace collapsed to one space.

    ``strip_punctuation`` replaces punctuation and symbols by spaces; ``normalize_digits``
    maps every decimal digit to ``0`` (so "page 12" and "page 47" match, as in FineWeb's
    MinHash normalisation). Leading and trailing whitespace is removed.
    """
    if text.isascii():
        table = _ASCII_TABLES[strip_punctuation, normalize_digits]
        return " ".join(text.encode("ascii").translate(table).decode("ascii").split())
    # NFKC folds compatibility forms (full-width letters, ligatures, non-breaking spaces)
    # before casefold, which is the Unicode-correct caseless match (ß -> ss).
    text = unicodedata.normalize("NFKC", text).casefold()
    if strip_punctuation:
        text = _PUNCTUATION.sub(" ", text)
    if normalize_digits:
        text = _DIGIT.sub("0", text)
    return " ".join(text.split())
