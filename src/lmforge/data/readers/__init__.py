"""One reader per input format; ``lmforge.data.sources`` picks one by ``source.kind``.

Each module has ``SUFFIXES`` (what a directory walk keeps; None keeps every file),
optionally ``DEPENDENCY`` (module, purpose, lmforge extra: checked before reading starts),
and ``read_file(path, cfg) -> Iterator[Document | BadDocument]`` for one input file:

- ``text``: text and Markdown files (Project Gutenberg boilerplate stripped)
- ``jsonl``: JSON lines, plain, ``.gz`` or ``.zst``
- ``parquet``: Parquet rows
- ``csv``: CSV/TSV rows
- ``html``: HTML files, main text (trafilatura); also ``extract_main_text``/``visible_text``
- ``warc``: HTML responses in WARC archives
- ``wikipedia``: MediaWiki XML dumps (articles, wikitext reduced by ``wikitext``)
- ``pdf``: the text layer of PDF files
- ``epub``: EPUB books

Shared pieces: ``base`` (item type, common messages), ``compression`` (streamed .gz/.bz2/.zst).
Modules are imported on first use, so reading text never imports trafilatura or pypdf.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# source.kind -> reader module; every kind except stdlib (our built-in corpus) and crawl.
FILE_KINDS = ("text", "jsonl", "parquet", "csv", "html", "warc", "wikipedia", "pdf", "epub")


def reader_for(kind: str) -> ModuleType:
    """The reader module of a file-based ``source.kind``."""
    return importlib.import_module(f"lmforge.data.readers.{kind}")


def check_dependency(kind: str) -> None:
    """Raise ``DataError`` naming the extra to install if ``kind``'s reader lacks its library."""
    dependency = getattr(reader_for(kind), "DEPENDENCY", None)
    if dependency is not None:
        from lmforge.data.readers.base import require

        module, purpose, extra = dependency
        require(module, purpose, extra)
