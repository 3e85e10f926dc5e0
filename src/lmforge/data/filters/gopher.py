"""Gopher's quality and repetition filters (Rae et al. 2021, MassiveText, appendix A.1).

Two steps, each dropping a document at the first rule it fails, with the rule's reason code
and ``detail`` = measured value vs threshold:

- ``gopher_quality``: the "quality filters" of MassiveText (word count, mean word length,
  symbol ratios, bullet and ellipsis lines, alphabetic words, stop words).
- ``gopher_repetition``: the "repetition removal" thresholds of Gopher table A1.

Words are the ``\\w+`` runs of ``words.py`` (Gopher's "non-symbol words"); every rule's
option can be set to ``null`` to switch it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from lmforge.config import option
from lmforge.data.document import Document
from lmforge.data.filters import check_options
from lmforge.data.filters.words import TextStats, repeated_count_and_chars, text_stats
from lmforge.data.steps import DocStep, Drop, register_step

# Gopher's stop words; a document must contain at least `min_stop_words` distinct ones. Case is
# ignored by listing the three spellings a word has in running text ("the", "The", "THE").
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
BULLETS = ("•", "-", "*", "·", "‣", "◦", "▪", "►", "–")
ELLIPSES = ("...", "…")


def _spellings(words: tuple[str, ...]) -> dict[str, str]:
    """Map each casing of each word (lower, Title, UPPER) back to the lowercase word."""
    return {form: w.lower() for w in words for form in (w.lower(), w.capitalize(), w.upper())}


def _frac(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


# ----------------------------------------------------------------------------- quality


@dataclass
class GopherQualityOptions:
    """Thresholds of Gopher's quality filter (Rae et al. 2021, appendix A.1.1); null = rule off."""

    min_words: Optional[int] = option(50, "drop with fewer words (Gopher: 50)")
    max_words: Optional[int] = option(100_000, "drop with more words (Gopher: 100,000)")
    min_mean_word_length: Optional[float] = option(3.0, "drop if the mean word length is lower (Gopher: 3)")
    max_mean_word_length: Optional[float] = option(10.0, "drop if the mean word length is higher (Gopher: 10)")
    max_hash_ratio: Optional[float] = option(0.1, "drop if '#' count / words is higher (Gopher: 0.1)")
    max_ellipsis_ratio: Optional[float] = option(0.1, "drop if ellipsis ('...' or '…') count / words "
                                                      "is higher (Gopher: 0.1)")
    max_bullet_lines_frac: Optional[float] = option(0.9, "drop if a higher fraction of lines starts with "
                                                         "a bullet (Gopher: 0.9)")
    max_ellipsis_lines_frac: Optional[float] = option(0.3, "drop if a higher fraction of lines ends with "
                                                           "an ellipsis (Gopher: 0.3)")
    min_alpha_words_frac: Optional[float] = option(0.8, "drop if a lower fraction of tokens (words and "
                                                        "symbol runs) contains a letter (Gopher: 0.8)")
    min_stop_words: Optional[int] = option(2, "drop with fewer distinct stop words (Gopher: 2)")
    stop_words: list[str] = option(list(STOP_WORDS), "the stop words (Gopher's English list; matched "
                                                     "as lower, Title or UPPER case)")


@register_step("gopher_quality", GopherQualityOptions,
               "Gopher quality rules: word count, mean word length, symbols, bullets, stop words")
class GopherQuality(DocStep):
    """Gopher's MassiveText quality filter (Rae et al. 2021, appendix A.1.1).

    Definitions (where datatrove's ``GopherQualityFilter`` differs, it is said):

    - words: ``\\w+`` runs; symbols are never words. datatrove counts spaCy tokens with a
      non-punctuation character, which keeps contractions ("n't") and URLs as one token.
    - mean word length: characters of words / number of words.
    - hash and ellipsis ratios: ``text.count("#")`` and ``count("...") + count("…")`` over the
      number of words (datatrove divides by all tokens, punctuation included, so its ratios are
      lower).
    - lines: non-blank lines, stripped (datatrove counts blank lines in the denominator).
      A bullet line starts with one of ``• - * · ‣ ◦ ▪ ► –``; datatrove knows ``•`` and ``-``.
    - alphabetic words: the one rule where "words" are all tokens, symbol runs included
      (``split_tokens``: "a, b..." is 4 tokens), as in datatrove; the fraction is tokens with a
      letter (not only digits and underscores) over tokens. A page of numbers, "|" separators or
      emoji fails it; prose, at one punctuation run per ~8 words, scores ~0.9.
    - stop words: distinct stop words present, in lower, Title or UPPER case (datatrove matches
      lowercase only, so "The" alone does not count there).

    Boundaries follow the paper: a value equal to a threshold is kept.
    """

    def __init__(self, options: GopherQualityOptions):
        check_options(self.name, options)
        self.options = options
        self._stop_spellings = _spellings(tuple(options.stop_words))

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        drop = self.check(text_stats(doc.text))
        return doc if drop is None else drop

    def check(self, stats: TextStats) -> Optional[Drop]:
        """The first rule ``stats`` fails, as a ``Drop``; None if it passes them all."""
        o = self.options
        text = stats.text
        words = stats.words
        num_words = len(words)
        if o.min_words is not None and num_words < o.min_words:
            return Drop("too_few_words", f"{num_words} words < {o.min_words}")
        if o.max_words is not None and num_words > o.max_words:
            return Drop("too_many_words", f"{num_words} words > {o.max_words}")
        mean_length = _frac(stats.num_word_chars, num_words)
        if o.min_mean_word_length is not None and mean_length < o.min_mean_word_length:
            return Drop("mean_word_length_low", f"mean word length {mean_length:.3f} < {o.min_mean_word_length}")
        if o.max_mean_word_length is not None and mean_length > o.max_mean_word_length:
            return Drop("mean_word_length_high", f"mean word length {mean_length:.3f} > {o.max_mean_word_length}")
        if o.max_hash_ratio is not None:
            ratio = _frac(text.count("#"), num_words)
            if ratio > o.max_hash_ratio:
                return Drop("hash_ratio", f"'#' per word {ratio:.3f} > {o.max_hash_ratio}")
        if o.max_ellipsis_ratio is not None:
            ratio = _frac(text.count("...") + text.count("…"), num_words)
            if ratio > o.max_ellipsis_ratio:
                return Drop("ellipsis_ratio", f"ellipses per word {ratio:.3f} > {o.max_ellipsis_ratio}")
        lines = stats.lines
        if o.max_bullet_lines_frac is not None:
            frac = _frac(sum(1 for line in lines if line.startswith(BULLETS)), len(lines))
            if frac > o.max_bullet_lines_frac:
                return Drop("bullet_lines_frac", f"bullet lines {frac:.3f} > {o.max_bullet_lines_frac}")
        if o.max_ellipsis_lines_frac is not None:
            frac = _frac(sum(1 for line in lines if line.endswith(ELLIPSES)), len(lines))
            if frac > o.max_ellipsis_lines_frac:
                return Drop("ellipsis_lines_frac", f"lines ending in an ellipsis {frac:.3f} > "
                                                   f"{o.max_ellipsis_lines_frac}")
        if o.min_alpha_words_frac is not None:
            frac = _frac(num_words - stats.num_non_alpha_words, num_words + stats.num_symbol_runs)
            if frac < o.min_alpha_words_frac:
                return Drop("alpha_words_frac", f"tokens with a letter {frac:.3f} < {o.min_alpha_words_frac}")
        if o.min_stop_words is not None:
            found = {self._stop_spellings[w] for w in self._stop_spellings.keys() & set(words)}
            if len(found) < o.min_stop_words:
                return Drop("stop_words", f"{len(found)} distinct stop words < {o.min_stop_words}")
        return None


# -------------------------------------------------------------------------- repetition


@dataclass
class GopherRepetitionOptions:
    """Thresholds of Gopher table A1; a document is dropped when a value is >= its threshold."""

    dup_line_frac: Optional[float] = option(0.30, "repeated lines / lines (Gopher: 0.30)")
    dup_para_frac: Optional[float] = option(0.30, "repeated paragraphs / paragraphs (Gopher: 0.30)")
    dup_line_char_frac: Optional[float] = option(0.20, "characters in repeated lines / characters (Gopher: 0.20)")
    dup_para_char_frac: Optional[float] = option(0.20, "characters in repeated paragraphs / characters "
                                                       "(Gopher: 0.20)")
    top_2gram_frac: Optional[float] = option(0.20, "word characters in the most frequent 2-gram (Gopher: 0.20)")
    top_3gram_frac: Optional[float] = option(0.18, "word characters in the most frequent 3-gram (Gopher: 0.18)")
    top_4gram_frac: Optional[float] = option(0.16, "word characters in the most frequent 4-gram (Gopher: 0.16)")
    dup_5gram_frac: Optional[float] = option(0.15, "word characters covered by repeated 5-grams (Gopher: 0.15)")
    dup_6gram_frac: Optional[float] = option(0.14, "word characters covered by repeated 6-grams (Gopher: 0.14)")
    dup_7gram_frac: Optional[float] = option(0.13, "word characters covered by repeated 7-grams (Gopher: 0.13)")
    dup_8gram_frac: Optional[float] = option(0.12, "word characters covered by repeated 8-grams (Gopher: 0.12)")
    dup_9gram_frac: Optional[float] = option(0.11, "word characters covered by repeated 9-grams (Gopher: 0.11)")
    dup_10gram_frac: Optional[float] = option(0.10, "word characters covered by repeated 10-grams (Gopher: 0.10)")


def top_ngram_char_frac(stats: TextStats, n: int, threshold: Optional[float] = None) -> float:
    """Fraction of word characters inside occurrences of the most frequent repeated ``n``-gram.

    The most frequent n-gram is the one with the highest count (ties: the one covering the most
    characters); an n-gram that occurs once is not repetition and gives 0. Overlapping
    occurrences ("a a a" has "a a" twice) count each word once, so the value is at most 1.

    With a ``threshold``, a cheap upper bound (top count x the n longest words' characters) is
    returned instead when it is already below the threshold: the keep/drop decision is the same,
    and clean prose never pays for finding the top n-gram's positions.
    """
    starts, counts = stats.repeated_ngrams(n)
    if not starts:
        return 0.0
    top_count = max(counts.values())
    if threshold is not None:
        bound = top_count * sum(stats.longest_word_lengths[:n]) / stats.num_word_chars
        if bound < threshold:
            return bound
    top_gram = max((gram for gram, count in counts.items() if count == top_count),
                   key=lambda gram: sum(map(len, gram)))
    words = stats.words
    top_starts = [i for i in starts if tuple(words[i:i + n]) == top_gram]
    return _covered_chars(top_starts, n, stats.word_char_prefix) / stats.num_word_chars


def dup_ngram_char_frac(stats: TextStats, n: int) -> float:
    """Fraction of word characters covered by the ``n``-grams that occur at least twice.

    A word is covered when it lies inside any occurrence (the first one included) of an
    n-gram that occurs at least twice; each covered word counts once however many such
    n-grams overlap it (the paper counts characters of overlapping duplicate n-grams once).
    """
    starts = stats.repeated_ngrams(n)[0]
    return _covered_chars(starts, n, stats.word_char_prefix) / stats.num_word_chars if starts else 0.0


def _covered_chars(starts: list[int], n: int, prefix: list[int]) -> int:
    """Characters of the words covered by the windows ``[s, s+n)`` for ``s`` in sorted ``starts``."""
    total = 0
    run_start = run_end = -1
    for s in starts:
        if s > run_end:  # a gap: close the current run of covered words
            total += prefix[run_end] - prefix[run_start] if run_end > 0 else 0
            run_start = s
        run_end = s + n
    if run_end > 0:
        total += prefix[run_end] - prefix[run_start]
    return total


@register_step("gopher_repetition", GopherRepetitionOptions,
               "Gopher repetition rules: duplicate lines/paragraphs, top and duplicate n-grams")
class GopherRepetition(DocStep):
    """Gopher's repetition removal (Rae et al. 2021, appendix A.1.1, table A1).

    Definitions used here, and where datatrove's ``GopherRepetitionFilter`` differs:

    - lines: non-blank lines, stripped; paragraphs: separated by a blank line, stripped.
    - duplicate line (paragraph) fraction: occurrences that repeat an earlier line, over all
      lines (the first occurrence is not a duplicate: it is what dedup would keep). Same as
      datatrove.
    - duplicate line (paragraph) character fraction: characters of those repeats over
      ``len(text)``. Same as datatrove except for the stripping.
    - n-grams are over words only (``\\w+`` runs); punctuation is not a word. Character
      fractions are word characters over all word characters, so whitespace and punctuation
      are in neither numerator nor denominator and the value never exceeds 1. datatrove
      n-grams spaCy tokens (punctuation included) and divides by ``len(text)``.
    - top n-gram (n = 2, 3, 4): see ``top_ngram_char_frac``. datatrove multiplies the
      top n-gram's length (with spaces) by its count, so overlapping occurrences count twice.
    - duplicate n-gram (n = 5..10): see ``dup_ngram_char_frac``: every occurrence of a
      repeated n-gram is covered, the first one included: the paper measures the characters
      contained in duplicate n-grams, and the first copy is one of them. datatrove counts only
      later occurrences,
      found greedily left to right, so its values are at most about half of these for text
      that repeats once.
    - thresholds: dropped when value >= threshold (our reading of Rae et al. 2021, table A1);
      datatrove uses >.

    The net effect: on text that repeats itself this step measures higher fractions than
    datatrove and drops somewhat more; the benchmark reports the keep/drop agreement.
    """

    def __init__(self, options: GopherRepetitionOptions):
        check_options(self.name, options)
        self.options = options
        self._top = [(n, getattr(options, f"top_{n}gram_frac")) for n in (2, 3, 4)]
        self._dup = [(n, getattr(options, f"dup_{n}gram_frac")) for n in range(5, 11)]

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        drop = self.check(text_stats(doc.text))
        return doc if drop is None else drop

    def check(self, stats: TextStats) -> Optional[Drop]:
        """The first rule ``stats`` fails, as a ``Drop``; None if it passes them all."""
        o = self.options
        num_chars = len(stats.text)
        for unit, items, frac_max, char_frac_max in (
                ("para", stats.paragraphs, o.dup_para_frac, o.dup_para_char_frac),
                ("line", stats.lines, o.dup_line_frac, o.dup_line_char_frac)):
            num_repeats, repeat_chars = repeated_count_and_chars(items)
            frac = _frac(num_repeats, len(items))
            if frac_max is not None and frac >= frac_max:
                return Drop(f"dup_{unit}_frac", f"{num_repeats}/{len(items)} = {frac:.3f} >= {frac_max}")
            frac = _frac(repeat_chars, num_chars)
            if char_frac_max is not None and frac >= char_frac_max:
                return Drop(f"dup_{unit}_char_frac", f"{repeat_chars}/{num_chars} = {frac:.3f} >= {char_frac_max}")
        for n, frac_max in self._top:
            if frac_max is not None:
                frac = top_ngram_char_frac(stats, n, frac_max)
                if frac >= frac_max:
                    return Drop(f"top_{n}gram_frac", f"{frac:.3f} >= {frac_max}")
        for n, frac_max in self._dup:
            if frac_max is not None:
                frac = dup_ngram_char_frac(stats, n)
                if frac >= frac_max:
                    return Drop(f"dup_{n}gram_frac", f"{frac:.3f} >= {frac_max}")
        return None
