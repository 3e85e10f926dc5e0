"""C4's clean-up rules (Raffel et al. 2020, JMLR 21(140), section 2.2 "Colossal Clean Crawled Corpus").

Line rules remove lines and the step returns the document with the lines it kept; page rules
drop the whole document with a reason. The bad-words rule of C4 lives in the blocklist step.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Union

from lmforge.config import option
from lmforge.data.document import Document
from lmforge.data.filters import check_options
from lmforge.data.filters.words import WORD_RE
from lmforge.data.steps import DocStep, Drop, register_step

# C4: "a period, exclamation mark, question mark, or end quotation mark"; a line ending in an
# ellipsis is not a finished sentence (as in the C4 reference code).
C4_END_MARKS = (".", "!", "?", '"', "”")
ELLIPSES = ("...", "…")
# Wikipedia-style citation markers: [1], [], [edit], [citation needed].
CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# Cookie / terms-of-use boilerplate phrases of the C4 reference implementation (lowercase).
POLICY_RE = re.compile("terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies")
# A sentence ends at a run of final marks (maybe closed by a quote/bracket) before whitespace or
# the end of the line. Abbreviations ("e.g. this") count as ends: a cheap, stable approximation
# of the punkt/spaCy sentence splitters the reference implementations use.
_SENTENCE_END_RE = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*(?=\s|$)")


@dataclass
class C4Options:
    """C4's line and page rules (Raffel et al. 2020, section 2.2); 0 or false turns a rule off."""

    terminal_punctuation: bool = option(True, "keep only lines ending in . ! ? or a closing quote, not an "
                                              "ellipsis (C4: on; FineWeb turned it off, it removed ~30% of "
                                              "tokens)")
    min_words_per_line: int = option(3, "drop lines with fewer words (C4: 3)")
    max_word_length: int = option(1000, "drop lines with a whitespace-separated token longer than this (C4: 1000)")
    drop_javascript_lines: bool = option(True, "drop lines containing 'javascript' (any case)")
    drop_policy_lines: bool = option(True, "drop cookie / terms-of-use / privacy-policy lines")
    remove_citations: bool = option(True, "remove citation markers like [1], [edit], [citation needed]")
    drop_lorem_ipsum: bool = option(True, "drop the page if it contains 'lorem ipsum' (any case)")
    drop_curly_bracket: bool = option(True, "drop the page if it contains '{' (C4: code is not prose)")
    min_sentences: int = option(5, "drop the page if the kept lines hold fewer sentences (C4: 5)")


def count_sentences(line: str) -> int:
    """Sentences in one line: final-mark runs before a space or the end, plus an unfinished tail."""
    ends = _SENTENCE_END_RE.findall(line)
    finished = bool(ends) and line.endswith(ends[-1])
    return len(ends) + (0 if finished else 1)


@register_step("c4", C4Options, "C4 clean-up: keep sentence lines, drop boilerplate lines, lorem ipsum, code")
class C4Filter(DocStep):
    """C4's heuristics (Raffel et al. 2020, section 2.2), in the reference code's order per line.

    For each stripped line: drop it if a token is longer than ``max_word_length``; remove
    citation markers; drop it unless it ends in terminal punctuation (option); drop it if it
    has fewer than ``min_words_per_line`` words (``\\w+`` runs, so "|" or "-" are not words);
    drop it if it mentions javascript or is policy boilerplate. The page is dropped if the
    kept lines hold fewer than ``min_sentences`` sentences (``count_sentences``; datatrove
    counts with spaCy's sentencizer, the C4 code with punkt), and, following the paper, if
    *anywhere* it contains "lorem ipsum" or "{". (datatrove, after the C4 reference code, looks for those two
    only in lines that survived the earlier line rules, so a "{" in a code line without final
    punctuation drops the page here but not there.)

    Returns the document with the kept lines joined by "\\n", or the same object if nothing
    changed.
    """

    def __init__(self, options: C4Options):
        check_options(self.name, options)
        self.options = options

    def __call__(self, doc: Document) -> Union[Document, Drop]:
        o = self.options
        text = doc.text
        if o.drop_curly_bracket and "{" in text:
            return Drop("curly_bracket", "the page contains '{'")
        lowered = text.lower()
        if o.drop_lorem_ipsum and "lorem ipsum" in lowered:
            return Drop("lorem_ipsum", "the page contains 'lorem ipsum'")
        # Mentions are rare: look at the whole page once, then per line only if needed.
        check_javascript = o.drop_javascript_lines and "javascript" in lowered
        check_policy = o.drop_policy_lines and POLICY_RE.search(lowered) is not None
        check_citations = o.remove_citations and "[" in text
        kept: list[str] = []
        num_sentences = 0
        for line in text.split("\n"):
            line = line.strip()
            if not line:
                continue
            if o.max_word_length and len(line) > o.max_word_length \
                    and max(map(len, line.split())) > o.max_word_length:
                continue
            if check_citations:
                line = CITATION_RE.sub("", line).strip()
                if not line:
                    continue
            if o.terminal_punctuation and (not line.endswith(C4_END_MARKS) or line.endswith(ELLIPSES)):
                continue
            if o.min_words_per_line and len(WORD_RE.findall(line)) < o.min_words_per_line:
                continue
            if check_javascript or check_policy:
                lowered_line = line.lower()
                if check_javascript and "javascript" in lowered_line:
                    continue
                if check_policy and POLICY_RE.search(lowered_line):
                    continue
            if o.min_sentences:
                num_sentences += count_sentences(line)
            kept.append(line)
        if o.min_sentences and num_sentences < o.min_sentences:
            return Drop("too_few_sentences", f"{num_sentences} sentences in kept lines < {o.min_sentences}")
        if not kept:
            return Drop("no_lines_kept", "every line was removed")
        new_text = "\n".join(kept)
        return doc if new_text == text else dataclasses.replace(doc, text=new_text)
