"""Length and language-agnostic character heuristics: cheap filters for degenerate pages.

``length`` bounds a document's size; ``heuristics`` drops pages whose characters or lines do
not look like prose in any script (symbol soup, digit tables, minified code, link lists).
These defaults are lmforge's own, not a published recipe: they are set loose, so that clean
text in any language passes and only pages that no quality filter would keep are dropped
early and cheaply. Each can be turned off with ``null``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

from lmforge.config import option
from lmforge.data.document import Document
from lmforge.data.filters import check_options
from lmforge.data.filters.words import text_stats
from lmforge.data.steps import DocStep, Drop, register_step

_NON_LETTER_RE = re.compile(r"[\W\d_]+")  # \w minus digits and underscore = letters
_NON_DIGIT_RE = re.compile(r"\D+")
_WORD_CHARS_RE = re.compile(r"\w+")
_URL_LINE_RE = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)\S+\Z")


@dataclass
class LengthOptions:
    """Size bounds of a document; null = no bound."""

    min_chars: Optional[int] = option(None, "drop documents with fewer characters")
    max_chars: Optional[int] = option(1_000_000, "drop documents with more characters (a megabyte of text "
                                                 "is rarely one document)")
    min_words: Optional[int] = option(1, "drop documents with fewer words (\\w+ runs); 1 drops wordless ones")
    max_words: Optional[int] = option(None, "drop documents with more words")


@register_step("length", LengthOptions, "drop documents outside character and word count bounds")
class Length(DocStep):
    """Drop a document outside ``[min_chars, max_chars]`` characters or ``[min_words, max_words]`` words."""

    def __init__(self, options: LengthOptions):
        check_options(self.name, options)
        self.options = options

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        o = self.options
        num_chars = len(doc.text)
        if o.min_chars is not None and num_chars < o.min_chars:
            return Drop("too_few_chars", f"{num_chars} chars < {o.min_chars}")
        if o.max_chars is not None and num_chars > o.max_chars:
            return Drop("too_many_chars", f"{num_chars} chars > {o.max_chars}")
        if o.min_words is not None or o.max_words is not None:
            num_words = len(text_stats(doc.text).words)
            if o.min_words is not None and num_words < o.min_words:
                return Drop("too_few_words", f"{num_words} words < {o.min_words}")
            if o.max_words is not None and num_words > o.max_words:
                return Drop("too_many_words", f"{num_words} words > {o.max_words}")
        return doc


@dataclass
class HeuristicsOptions:
    """Character and line heuristics; fractions are of non-whitespace characters; null = rule off."""

    max_symbol_frac: Optional[float] = option(0.2, "drop if more of the characters are neither letters nor "
                                                   "digits (prose: ~3-5% punctuation)")
    max_digit_frac: Optional[float] = option(0.3, "drop if more of the characters are digits (tables, "
                                                  "price lists, logs)")
    min_alpha_frac: Optional[float] = option(0.6, "drop if fewer of the characters are letters (any script)")
    max_line_length: Optional[int] = option(20_000, "drop if a line is longer (minified code, base64, "
                                                    "one-line dumps)")
    max_url_line_frac: Optional[float] = option(0.5, "drop if more of the non-blank lines are a bare URL "
                                                     "(link lists)")


@register_step("heuristics", HeuristicsOptions,
               "language-agnostic heuristics: symbol, digit and letter fractions, line length, URL lines")
class Heuristics(DocStep):
    """Drop pages whose characters or lines do not look like prose (lmforge's defaults, see module doc).

    Letters are Unicode alphabetic characters, digits Unicode decimal digits, symbols every
    other non-whitespace character (punctuation, emoji, ``_``). A URL line is a whole stripped
    line of the form ``scheme://...`` or ``www....`` without spaces.
    """

    def __init__(self, options: HeuristicsOptions):
        check_options(self.name, options)
        self.options = options

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        o = self.options
        text = doc.text
        dense = "".join(text.split())  # the non-whitespace characters
        num_dense = len(dense)
        if not num_dense:
            return Drop("empty", "no non-whitespace character")
        if o.max_symbol_frac is not None:
            num_symbols = len(_WORD_CHARS_RE.sub("", dense)) + dense.count("_")
            frac = num_symbols / num_dense
            if frac > o.max_symbol_frac:
                return Drop("symbol_frac", f"symbols {frac:.3f} > {o.max_symbol_frac}")
        if o.max_digit_frac is not None:
            frac = len(_NON_DIGIT_RE.sub("", dense)) / num_dense
            if frac > o.max_digit_frac:
                return Drop("digit_frac", f"digits {frac:.3f} > {o.max_digit_frac}")
        if o.min_alpha_frac is not None:
            frac = len(_NON_LETTER_RE.sub("", dense)) / num_dense
            if frac < o.min_alpha_frac:
                return Drop("alpha_frac", f"letters {frac:.3f} < {o.min_alpha_frac}")
        if o.max_line_length is not None and len(text) > o.max_line_length:
            longest = max(map(len, text.split("\n")))
            if longest > o.max_line_length:
                return Drop("line_length", f"a line of {longest} chars > {o.max_line_length}")
        if o.max_url_line_frac is not None:
            lines = text_stats(text).lines
            frac = sum(1 for line in lines if _URL_LINE_RE.match(line)) / len(lines)
            if frac > o.max_url_line_frac:
                return Drop("url_line_frac", f"bare URL lines {frac:.3f} > {o.max_url_line_frac}")
        return doc
