"""EPUB books: one document per book, chapters in reading (spine) order, XHTML reduced to text.

The navigation document (table of contents) is left out even when the spine lists it.

``meta`` holds ``title`` and ``author`` (Dublin Core ``dc:title`` / ``dc:creator``, first of
each) when the book declares them. A file that is not a readable EPUB (not a zip, no OPF
package document, ...) is ``bad_epub``; ebooklib raises several exception types for those,
so any exception from opening the book counts (only the ebooklib call is in that scope).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, one_line, require, unreadable
from lmforge.data.readers.html import visible_text

SUFFIXES = (".epub",)
DEPENDENCY = ("ebooklib.epub", "reading EPUB books", "data")  # checked before any file is read


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    epub = require("ebooklib.epub", "reading EPUB books")
    try:
        with warnings.catch_warnings():  # ebooklib warns about its own future defaults
            warnings.simplefilter("ignore")
            book = epub.read_epub(path, options={"ignore_ncx": True})
    except OSError as err:
        yield unreadable(path, path, err)
        return
    except Exception as err:  # noqa: BLE001 - see the module docstring
        yield BadDocument(path, "bad_epub", f"{path} is not a readable EPUB ({one_line(err)}): "
                                            f"re-create it or remove it")
        return
    chapters = []
    for item_id, _linear in book.spine:
        item = book.get_item_with_id(item_id)
        # The EPUB 3 navigation document is a table of contents, not text of the book.
        if item is not None and not _is_navigation(epub, item):
            chapters.append(visible_text(item.get_content()))
    meta: dict[str, Any] = {"source": path, "chapters": len(chapters)}
    for namespace_key, name in (("title", "title"), ("creator", "author")):
        values = book.get_metadata("DC", namespace_key)
        if values and values[0][0]:
            meta[name] = values[0][0].strip()
    yield Document(path, "\n\n".join(chapter for chapter in chapters if chapter), meta)


def _is_navigation(epub, item) -> bool:
    return isinstance(item, epub.EpubNav) or "nav" in (getattr(item, "properties", None) or [])
