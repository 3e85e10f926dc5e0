"""Reduce MediaWiki wikitext to the plain prose a reader of the rendered article sees.

Our own small reducer, not a MediaWiki parser: templates cannot be expanded without the
wiki's template pages, so they are removed, as in the Wikipedia corpora built for
language models (WikiExtractor, the Wikipedia part of the Pile). In order:

1. HTML comments ``<!-- -->``; ``<ref>..</ref>`` and ``<ref/>`` citations; non-prose tags
   with their content (``gallery``, ``math``, ``timeline``, ``score``, ``graph``).
2. Templates and parser functions ``{{...}}``, nested to any depth.
3. Tables ``{| ... |}``, nested.
4. Links: ``[[File:..]]``/``[[Image:..]]``/``[[Category:..]]`` removed (captions and their
   inner links too); ``[[target|label]]`` -> label, ``[[target]]`` -> target; external
   ``[url label]`` -> label, ``[url]`` -> nothing.
5. The remaining tags (``<small>``, ``<span>``...) are stripped, their text kept.
6. Markup: ``'''bold'''`` and ``''italic''`` quotes, headings ``== X ==`` -> ``X``, list
   and indent markers (``*``, ``#``, ``:``, ``;``) at line start, rules ``----``,
   magic words (``__TOC__``), entities (``&nbsp;``).
7. Whitespace: trailing spaces dropped, runs of blank lines collapsed to one.
"""

from __future__ import annotations

import html
import re

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_REF = re.compile(r"<ref\b[^>]*/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_NON_PROSE = re.compile(r"<(gallery|math|timeline|score|graph|references)\b[^>]*>.*?</\1\s*>"
                        r"|<references\b[^>]*/>", re.S | re.I)
_TEMPLATE_MARK = re.compile(r"\{\{|\}\}")
_TABLE_MARK = re.compile(r"^[ \t]*(\{\||\|\})", re.M)
_INNER_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_DROPPED_NAMESPACES = ("file", "image", "media", "category")
_EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*(?:\s+([^\]]*))?\]")
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_BOLD_ITALIC = re.compile(r"'{2,5}")
_HEADING = re.compile(r"^(=+)[ \t]*(.*?)[ \t]*\1[ \t]*$", re.M)
_LIST_MARK = re.compile(r"^[*#:;]+[ \t]*", re.M)
_RULE = re.compile(r"^-{4,}[ \t]*$", re.M)
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.M)
_BLANK_LINES = re.compile(r"\n{3,}")


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of one article's wikitext (see the module docstring for what goes)."""
    text = _COMMENT.sub("", wikitext)
    text = _REF.sub("", text)
    text = _NON_PROSE.sub("", text)
    text = _remove_nested(text, _TEMPLATE_MARK, "{{")
    text = _remove_nested(text, _TABLE_MARK, "{|")
    text = _reduce_links(text)
    text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    text = _TAG.sub("", text)
    text = _BOLD_ITALIC.sub("", text)
    text = _HEADING.sub(r"\2", text)
    text = _LIST_MARK.sub("", text)
    text = _RULE.sub("", text)
    text = _MAGIC_WORD.sub("", text)
    text = html.unescape(text).replace("\u00a0", " ")
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def _remove_nested(text: str, marks: re.Pattern[str], opener: str) -> str:
    """Remove every outermost balanced span between ``opener`` marks and their closers.

    A closer with no opener is left as text; an opener never closed (broken markup)
    removes nothing, so one typo cannot swallow the rest of the article.
    """
    kept: list[str] = []
    depth = 0
    span_start = 0  # where the current outermost span began
    copied_to = 0  # text before this index is already in ``kept`` or dropped
    for mark in marks.finditer(text):
        if mark.group(mark.lastindex or 0) == opener:
            if depth == 0:
                span_start = mark.start()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                kept.append(text[copied_to:span_start])
                copied_to = mark.end()
    kept.append(text[copied_to:])
    return "".join(kept)


def _reduce_links(text: str) -> str:
    """Innermost links first, so a file caption's own links are resolved before the file goes."""
    while True:
        reduced = _INNER_LINK.sub(_link_text, text)
        if reduced == text:
            return reduced
        text = reduced


def _link_text(link: re.Match[str]) -> str:
    target, _, label = link.group(1).partition("|")
    namespace = target.partition(":")[0].strip().lower() if ":" in target else ""
    if namespace in _DROPPED_NAMESPACES and not target.startswith(":"):
        return ""
    if label:
        return label
    return target.lstrip(":")
