"""Plain-text and Markdown files: one file, one document, with Project Gutenberg boilerplate removed.

A Project Gutenberg plain-text book opens with a licence header ending in a line
``*** START OF THE PROJECT GUTENBERG EBOOK <TITLE> ***`` (older files: ``THIS``) and closes
with ``*** END OF THE PROJECT GUTENBERG EBOOK <TITLE> ***`` followed by the licence. The
licence is the same in every book, so left in it would be near-duplicate text repeated
tens of thousands of times across a book corpus; only the body between the markers is
kept, and the header's ``Title:``, ``Author:`` and ``Language:`` lines go into ``meta``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, unreadable

SUFFIXES = None  # a directory walk takes every file: text comes with many extensions (.txt, .md, .rst, none)

_START = re.compile(r"^\*\*\*\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT)\b(.*)$", re.M)
_END = re.compile(r"^\*\*\*\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT)\b.*$", re.M)
_HEADER_FIELDS = {"title": re.compile(r"^Title:[ \t]*(.+?)\s*$", re.M),
                  "author": re.compile(r"^Author:[ \t]*(.+?)\s*$", re.M),
                  "language": re.compile(r"^Language:[ \t]*(.+?)\s*$", re.M)}


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    yield read_text_file(path, path, strip_gutenberg=True)


def read_text_file(path: str, doc_id: str, strip_gutenberg: bool = False) -> Item:
    """One file, one document. A NUL byte marks a binary file (the heuristic git and grep use)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        return unreadable(doc_id, path, err)
    if b"\x00" in data:
        return BadDocument(doc_id, "binary", f"{path} looks binary (it has NUL bytes)", fix="paths")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadDocument(doc_id, "not_utf8", f"{path} is not valid UTF-8 (byte {err.start}): "
                                               f"re-encode it as UTF-8")
    del data  # a 100 MB file should cost its text, not its text plus its bytes
    text = text.removeprefix("\ufeff")
    meta: dict[str, Any] = {"source": path}
    if strip_gutenberg:
        text, book_meta = gutenberg_body(text)
        meta.update(book_meta)
    return Document(doc_id, text, meta)


def gutenberg_body(text: str) -> tuple[str, dict[str, Any]]:
    """The body of a Project Gutenberg book and its header fields; other text is returned as is.

    Either marker alone still strips its side (some files lose their footer).
    """
    if "PROJECT GUTENBERG" not in text:  # a fast scan, so ordinary text never pays for the regexes
        return text, {}
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    if start is None and end is None:
        return text, {}
    meta: dict[str, Any] = {"gutenberg": True}
    if start is not None:
        header = text[: start.start()]
        for name, pattern in _HEADER_FIELDS.items():
            found = pattern.search(header)
            if found:
                meta[name] = found.group(1)
        marker_title = start.group(1).strip(" *\r\t").removeprefix("OF ").strip()
        if marker_title and "title" not in meta:
            meta["title"] = marker_title
    body = text[start.end() if start else 0: end.start() if end else len(text)]
    return body.strip(), meta
