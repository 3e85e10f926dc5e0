"""Words, lines, paragraphs and n-grams of a document, computed once and shared by the filters.

Word splitting is a precompiled regex, not spaCy: a *word* is a maximal run of Unicode word
characters (``\\w+``: letters, digits, underscore) and a *symbol* is a maximal run of anything
else that is not whitespace (``[^\\w\\s]+``), so ``"Don't stop..."`` gives the words
``Don, t, stop`` and the symbols ``', ...``. It is language-agnostic for every script that
separates words with spaces or punctuation, and ~50x faster than datatrove's spaCy tokenizer
(`benchmarks/data_filters.py` measures the filters against datatrove's). Where the filters say "words" they mean these ``\\w+`` runs: the
Gopher rules count "non-symbol words", which is exactly this set.

``text_stats(text)`` returns a ``TextStats`` whose quantities (lines, words, prefix sums of
word lengths, ...) are computed lazily and at most once. It remembers the last text it saw
(by identity, strings are immutable), so consecutive filters on an unchanged document share
one word split. That memo never changes a result; it only saves work.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property
from itertools import accumulate
from typing import Iterator, Optional

WORD_RE = re.compile(r"\w+")
TOKEN_RE = re.compile(r"\w+|[^\w\s]+")
_SYMBOL_RUN_RE = re.compile(r"[^\w\s]+")
# A word with no alphabetic character is a run of decimal digits and underscores (``\w`` is
# letters, digits and ``_``). Unicode numerics like "½" count as alphabetic here; they are rare.
_NON_ALPHA_WORD_RE = re.compile(r"(?<!\w)[\d_]+(?!\w)")
# Paragraphs are separated by a blank line (two or more newlines, spaces allowed in between).
_PARAGRAPH_SPLIT_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")

# Sentence-final marks across scripts (Latin, CJK full-width, Arabic, Devanagari, Ethiopic,
# Myanmar, Khmer, Armenian), for the "line ends with punctuation" rules.
TERMINAL_PUNCTUATION = (".", "!", "?", "…", "‼", "‽", "⁇", "⁈", "⁉", "。", "！", "？", "．", "｡",
                        "؟", "۔", "।", "॥", "።", "፧", "။", "។", "։")
# Closing quotes and brackets that may follow the final mark: `He said "yes."` ends a sentence.
CLOSING_MARKS = "\"'”’»)]）」』"


def split_words(text: str) -> list[str]:
    """The words of ``text`` (maximal ``\\w+`` runs), in order."""
    return WORD_RE.findall(text)


def split_tokens(text: str) -> list[str]:
    """Words and symbol runs of ``text`` in order: ``"a, b..."`` -> ``["a", ",", "b", "..."]``."""
    return TOKEN_RE.findall(text)


def split_lines(text: str) -> list[str]:
    """Non-blank lines of ``text``, stripped of surrounding whitespace."""
    return [line for line in map(str.strip, text.split("\n")) if line]


def split_paragraphs(text: str) -> list[str]:
    """Non-blank paragraphs of ``text`` (separated by a blank line), stripped."""
    return [p for p in map(str.strip, _PARAGRAPH_SPLIT_RE.split(text)) if p]


def ends_with_terminal_punctuation(line: str) -> bool:
    """True if a stripped ``line`` ends a sentence: a final mark, then maybe closing quotes."""
    return line.rstrip(CLOSING_MARKS).endswith(TERMINAL_PUNCTUATION)


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    """All ``n``-grams of ``words`` as tuples, in order (``len(words) - n + 1`` of them)."""
    return list(zip(*(words[i:] for i in range(n))))


def repeated_count_and_chars(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier item, and how many characters those repeats hold.

    This is what exact deduplication of ``items`` would remove: the first occurrence of each
    distinct item is kept, every later one counts (Gopher's duplicate line/paragraph fractions).
    """
    counts = Counter(items)
    if len(counts) == len(items):
        return 0, 0
    num_repeats = 0
    repeat_chars = 0
    for item, count in counts.items():
        if count > 1:
            num_repeats += count - 1
            repeat_chars += (count - 1) * len(item)
    return num_repeats, repeat_chars


def repeated_ngrams(words: list[str], max_n: int) -> dict[int, tuple[list[int], Counter]]:
    """For each n in 2..max_n: the sorted start positions of the n-grams of ``words`` that occur
    at least twice, and a Counter that holds the exact count of every such n-gram.

    An n-gram can only repeat where the (n-1)-gram at the same start repeats, so each size only
    looks at the previous size's repeated positions: on ordinary prose all sizes together cost
    about one Counter over the 2-grams. (For n >= 3 the Counter only holds n-grams that start at
    such a position; every n-gram missing from it occurs once.)
    """
    stages = _repeated_ngram_stages(words)
    return {n: next(stages) for n in range(2, max_n + 1)}


def _repeated_ngram_stages(words: list[str]) -> Iterator[tuple[list[int], Counter]]:
    """``(starts, counts)`` of the repeated 2-grams, then 3-grams, ... (see ``repeated_ngrams``)."""
    grams: list = list(zip(words, words[1:]))
    counts = Counter(grams)
    starts = [i for i, gram in enumerate(grams) if counts[gram] > 1] if len(counts) < len(grams) else []
    yield starts, counts
    num_words = len(words)
    n = 3
    while True:
        starts = [i for i in starts if i + n <= num_words]
        grams = [tuple(words[i:i + n]) for i in starts]
        counts = Counter(grams)
        starts = [i for i, gram in zip(starts, grams) if counts[gram] > 1]
        yield starts, counts
        n += 1


class TextStats:
    """Derived quantities of one text, each computed on first use and then kept."""

    def __init__(self, text: str):
        self.text = text
        self._ngram_stages: Optional[Iterator[tuple[list[int], Counter]]] = None
        self._repeated: list[tuple[list[int], Counter]] = []  # index n - 2

    @cached_property
    def lines(self) -> list[str]:
        return split_lines(self.text)

    @cached_property
    def paragraphs(self) -> list[str]:
        return split_paragraphs(self.text)

    @cached_property
    def words(self) -> list[str]:
        return WORD_RE.findall(self.text)

    @cached_property
    def word_lengths(self) -> list[int]:
        return list(map(len, self.words))

    @cached_property
    def word_char_prefix(self) -> list[int]:
        """``prefix[i]`` = characters in ``words[:i]``; the characters of words ``a..b-1`` are
        ``prefix[b] - prefix[a]``."""
        return list(accumulate(self.word_lengths, initial=0))

    @cached_property
    def longest_word_lengths(self) -> list[int]:
        """Lengths of the 10 longest words, longest first (bounds on n-gram sizes)."""
        return sorted(self.word_lengths, reverse=True)[:10]

    @property
    def num_word_chars(self) -> int:
        return self.word_char_prefix[-1]

    @cached_property
    def num_symbol_runs(self) -> int:
        """Symbol tokens: maximal runs of characters that are neither word characters nor spaces."""
        return len(_SYMBOL_RUN_RE.findall(self.text))

    @cached_property
    def num_non_alpha_words(self) -> int:
        return len(_NON_ALPHA_WORD_RE.findall(self.text))

    def repeated_ngrams(self, n: int) -> tuple[list[int], Counter]:
        """``repeated_ngrams(words, n)[n]``, computing sizes 2..n once each and only when asked:
        a page dropped by its 2-grams never pays for its 10-grams."""
        if self._ngram_stages is None:
            self._ngram_stages = _repeated_ngram_stages(self.words)
        while len(self._repeated) < n - 1:
            self._repeated.append(next(self._ngram_stages))
        return self._repeated[n - 2]


_last: Optional[TextStats] = None


def text_stats(text: str) -> TextStats:
    """The ``TextStats`` of ``text``, shared with the previous caller if it passed the same string."""
    global _last
    if _last is None or _last.text is not text:
        _last = TextStats(text)
    return _last
