"""MediaWiki XML dumps (``.xml``, ``.xml.bz2``, ``.xml.gz``; e.g. enwiki-*-pages-articles.xml.bz2).

One document per article: pages of namespace 0 only (talk, user, template, category...
pages are ``not_article``), redirects skipped (``redirect``), the latest revision's
wikitext reduced to plain text by ``wikitext.wikitext_to_text``. ``meta`` holds ``title``
and ``page_id``; the id is ``<dump path>:<page id>``.

The dump is parsed as a stream (``iterparse``) and each page is dropped from the tree once
read, so memory stays flat however large the dump is (enwiki's is ~100 GB uncompressed).
A truncated dump keeps the articles before the cut and counts one ``truncated_<codec>``
(compressed) or ``bad_xml`` skip.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, unreadable
from lmforge.data.readers.compression import CorruptStream, open_binary
from lmforge.data.readers.wikitext import wikitext_to_text

SUFFIXES = (".xml", ".xml.bz2", ".xml.gz", ".xml.zst")
_ARTICLE_NAMESPACE = "0"


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    num_pages = 0
    try:
        with open_binary(path) as f:
            root = None
            for event, element in ET.iterparse(f, events=("start", "end")):
                if root is None:
                    root = element
                if event == "end" and _local(element.tag) == "page":
                    num_pages += 1
                    yield _page_item(path, num_pages, element)
                    root.clear()  # drop the pages read so far: memory stays flat
    except CorruptStream as err:
        yield BadDocument(f"{path}:page{num_pages + 1}", err.reason, err.describe(path, f"page {num_pages}"))
    except ET.ParseError as err:
        line, column = err.position
        yield BadDocument(f"{path}:page{num_pages + 1}", "bad_xml",
                          f"{path} is not valid MediaWiki XML at line {line}, column {column} "
                          f"(after {num_pages} pages; truncated?): re-create or re-download it")
    except OSError as err:
        yield unreadable(path, path, err)


def _page_item(path: str, position: int, page: ET.Element) -> Item:
    fields = {_local(child.tag): child for child in page}
    title = _text(fields.get("title"))
    page_id = _text(fields.get("id")) or f"page{position}"
    doc_id = f"{path}:{page_id}"
    namespace = _text(fields.get("ns")) or _ARTICLE_NAMESPACE
    if namespace != _ARTICLE_NAMESPACE:
        return BadDocument(doc_id, "not_article", f"{path} page '{title}' is in namespace {namespace}, "
                                                  f"not an article")
    if "redirect" in fields:
        return BadDocument(doc_id, "redirect", f"{path} page '{title}' is a redirect")
    revisions = [child for child in page if _local(child.tag) == "revision"]
    wikitext = ""
    if revisions:
        texts = [child for child in revisions[-1] if _local(child.tag) == "text"]
        wikitext = _text(texts[0]) if texts else ""
    if wikitext.lstrip()[:9].upper() == "#REDIRECT":  # old dumps mark redirects only in the text
        return BadDocument(doc_id, "redirect", f"{path} page '{title}' is a redirect")
    return Document(doc_id, wikitext_to_text(wikitext), {"source": path, "title": title, "page_id": page_id})


def _local(tag: str) -> str:
    """A tag without its namespace: dumps use export-0.10, 0.11... namespaces."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _text(element: ET.Element | None) -> str:
    return (element.text or "") if element is not None else ""
