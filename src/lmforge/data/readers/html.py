"""HTML files, and the two HTML-to-text functions other readers use.

``extract_main_text`` keeps a page's main text and drops navigation, headers, footers,
sidebars, cookie banners and comments, using trafilatura. Why trafilatura: FineWeb
(Penedo et al. 2024, arXiv 2406.17557) extracted text from Common Crawl WARC files with it
and trained better models on that than on Common Crawl's own WET text extraction; it is
among the most accurate main-text extractors in published comparisons (Barbaresi 2021,
ACL-IJCNLP system demos; Bevendorff et al. 2023, SIGIR), and it is maintained.
resiliparse (``resiliparse.extract.html2text``) is the faster alternative (several times
the pages per second; DCLM, Li et al. 2024, used it) at somewhat lower precision.

Options: ``favor_precision`` as FineWeb (boilerplate that slips in costs more than a lost
paragraph), no comments, no cross-document deduplication (trafilatura's dedup cache is
process state: results would depend on which worker saw which page first).

``visible_text`` keeps *all* visible text of a page with paragraph breaks: EPUB chapters
are all content, and main-text extraction would drop short ones.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, require, unreadable

SUFFIXES = (".html", ".htm", ".xhtml")
DEPENDENCY = ("trafilatura", "extracting main text from HTML", "data")  # checked before any file is read
# trafilatura's own default MAX_FILE_SIZE: it returns nothing for larger pages, which would
# be reported as "no main text"; a separate reason tells the user what actually happened.
MAX_HTML_BYTES = 20_000_000

_BLOCK_TAGS = ("p", "div", "br", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "blockquote", "pre",
               "section", "article", "table", "ul", "ol", "dd", "dt", "hr", "figure", "header", "footer")
# Marks block ends until whitespace is collapsed: a private-use character, because lxml
# refuses control characters and no real text uses U+E000 as a separator.
_BLOCK_BREAK = "\ue000"
_WHITESPACE = re.compile(r"\s+")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def extract_main_text(html: str | bytes, url: str = "") -> str | None:
    """The main text of an HTML page (paragraphs separated by newlines), or None if it has none.

    Bytes are decoded by trafilatura (meta charset, then detection). Pages without a
    ``<body>``, empty pages, garbage and pages larger than ``MAX_HTML_BYTES`` give None.
    """
    if not html or len(html) > MAX_HTML_BYTES:
        return None
    trafilatura = require("trafilatura", "extracting main text from HTML")
    # trafilatura logs a warning for every page it finds no text in: in a WARC of a million
    # pages that buries the run's own output, and each such page is counted by reason anyway.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    try:
        text = trafilatura.extract(html, url=url or None, favor_precision=True, include_comments=False,
                                   deduplicate=False, output_format="txt")
    except (ValueError, TypeError, LookupError):  # lxml refusing odd input (e.g. an unknown charset)
        return None
    return text if text and not text.isspace() else None


def visible_text(html: str | bytes) -> str:
    """Every visible text of an (X)HTML page, blocks separated by blank lines ('' if none).

    Bytes are read as UTF-8 (what EPUB requires of its XHTML); whitespace inside a block
    collapses to one space, as a browser renders it.
    """
    lxml_html = require("lxml.html", "reading HTML")
    from lxml import etree

    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    html = _XML_DECLARATION.sub("", html, count=1)  # lxml refuses a str that declares its encoding
    try:
        root = lxml_html.fromstring(html)
    except (etree.ParserError, ValueError):  # "Document is empty"
        return ""
    hidden = [e for e in root.iter("script", "style", "head", "title", etree.Comment, etree.ProcessingInstruction)]
    for element in hidden:
        if element.getparent() is not None:
            element.drop_tree()
    for element in root.iter(*_BLOCK_TAGS):
        element.tail = _BLOCK_BREAK + (element.tail or "")
        element.text = _BLOCK_BREAK + (element.text or "")
    text = _WHITESPACE.sub(" ", "".join(root.itertext()))
    blocks = (block.strip() for block in text.split(_BLOCK_BREAK))
    return "\n\n".join(block for block in blocks if block)


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    """One HTML file, one document: its main text."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_HTML_BYTES + 1)
    except OSError as err:
        yield unreadable(path, path, err)
        return
    if len(data) > MAX_HTML_BYTES:
        yield BadDocument(path, "too_large", f"{path} is larger than {MAX_HTML_BYTES} bytes, too large "
                                             f"for HTML extraction: split it or remove it")
    elif b"\x00" in data:
        yield BadDocument(path, "binary", f"{path} looks binary (it has NUL bytes)", fix="paths")
    else:
        text = extract_main_text(data)
        if text is None:
            yield BadDocument(path, "no_main_text", f"{path} has no extractable main text (no <body>, or "
                                                    f"only boilerplate)", fix="paths")
        else:
            yield Document(path, text, {"source": path})
