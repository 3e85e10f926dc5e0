"""Read raw documents from a source: files of many formats, the stdlib, or a web crawl.

The unit of work is one input file (a *shard*): ``source_shards`` lists them in a
deterministic order and ``read_shard`` reads one, so the pipeline can spread shards over
worker processes; ``read_documents`` reads them all in order. The format readers live in
``lmforge.data.readers`` (one module per format) and yield ``Document``s, or a
``BadDocument`` for anything they cannot use; ``read_shard`` does the bookkeeping in one
place: it counts every item, drops whitespace-only documents as ``empty``, and either
raises on the first bad document (``on_error: raise``) or counts it by reason and goes on
(``on_error: skip``).

Skip reasons:

- any file: ``empty`` (whitespace only, or a file with no documents at all),
  ``unreadable`` (the OS refused to read the file), ``not_utf8``, ``binary`` (NUL bytes)
- compressed streams (.gz, .bz2, .zst): ``truncated_gzip``/``truncated_bz2``/``truncated_zst``
  (the stream ends early: documents before the cut are kept), ``bad_gzip``/``bad_bz2``/``bad_zst``
- jsonl: ``bad_json``, ``missing_field`` (no string text field)
- parquet: ``missing_field`` (no string column, or a null), ``bad_parquet``
- csv: ``missing_field`` (no such column, or a short row), ``bad_csv``
- html, warc: ``no_main_text`` (no <body>, or boilerplate only), ``too_large`` (over 20 MB)
- warc: ``no_payload``, ``not_html``, ``http_status`` (not 2xx), ``truncated_warc``, ``bad_warc``
- wikipedia: ``not_article`` (namespace other than 0), ``redirect``, ``bad_xml``
- pdf: ``encrypted``, ``no_text_layer``, ``bad_pdf``
- epub: ``bad_epub``
- crawl: the reasons of ``lmforge.data.crawl``
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document, ReadStats, SourceOptions
from lmforge.data.paths import expand_paths, walk_files
from lmforge.data.readers import FILE_KINDS, check_dependency, reader_for
from lmforge.data.readers.base import Item, require
from lmforge.data.readers.text import read_text_file
from lmforge.errors import DataError

# The stdlib corpus leaves out test suites (CPython's test/ is large and full of deliberately
# odd files) and third-party packages installed next to the stdlib.
_STDLIB_SKIP_DIRS = ("test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__")
_CRAWL_SHARD = "crawl"


PREPARE_OPTIONS = SourceOptions()  # `lmforge prepare`'s --source.* options


def source_shards(cfg: SourceConfig, options: SourceOptions = PREPARE_OPTIONS) -> list[str]:
    """The units of work of ``cfg``'s source in a deterministic order.

    File sources: their expanded, sorted, deduplicated file paths (a missing path or a
    glob matching nothing raises ``DataError``, naming the paths option as ``options`` spell
    it); stdlib: its ``.py`` files; crawl: the single shard ``"crawl"``.
    """
    if cfg.kind == "stdlib":
        return list(walk_files(_stdlib_root(), (".py",), _STDLIB_SKIP_DIRS))
    if cfg.kind == "crawl":
        # The crawler's robots.txt parser (lmforge.data.crawl.require_protego): fail before any
        # work starts, naming the extra.
        require("protego", "crawling (the robots.txt parser)", extra="data")
        return [_CRAWL_SHARD]
    if cfg.kind not in FILE_KINDS:
        raise DataError(f"unknown source.kind '{cfg.kind}': use stdlib, crawl or one of {', '.join(FILE_KINDS)}")
    shards = expand_paths(cfg.paths, cfg.kind, reader_for(cfg.kind).SUFFIXES, options)
    check_dependency(cfg.kind)  # fail before any work starts, not in the middle of a run
    return shards


def read_shard(cfg: SourceConfig, shard: str, stats: ReadStats,
               options: SourceOptions = PREPARE_OPTIONS) -> Iterator[Document]:
    """Yield the documents of one shard (from ``source_shards``), counting into ``stats``.

    Bad documents raise ``DataError`` (naming the file, and line or record) under
    ``on_error: raise``, or are counted in ``stats.skipped`` under ``on_error: skip``. The
    stdlib and crawl sources always skip: the stdlib is our own corpus, and a few of its files are
    empty or not UTF-8 on purpose. ``cfg.max_documents`` is not applied here (it spans
    shards; ``read_documents`` applies it). Error messages name the source options as
    ``options`` spell them (``--source.*`` for prepare, ``--input.*`` for data run, ...).
    """
    # The stdlib is our own corpus (a few files are empty on purpose) and a crawl meets 404s,
    # redirects and robots.txt refusals as routine: both count and go on.
    on_error = "skip" if cfg.kind in ("stdlib", "crawl") else cfg.on_error
    num_items = 0
    # A zero-byte file is empty whatever its suffix says (not a "bad PDF" or "bad XML").
    items = () if cfg.kind in FILE_KINDS and _is_zero_bytes(shard) else _shard_items(cfg, shard)
    for item in items:
        num_items += 1
        document = _account(item, on_error, stats, options)
        if document is not None:
            yield document
    if num_items == 0 and cfg.kind != "crawl":
        # A file that holds no document at all (an empty JSONL, a CSV with only a header) is
        # reported, so a corpus never shrinks without a trace.
        _account(BadDocument(shard, "empty", f"{shard} is empty (it holds no documents)", fix="paths"),
                 on_error, stats, options)


def read_documents(cfg: SourceConfig, stats: ReadStats,
                   options: SourceOptions = PREPARE_OPTIONS) -> Iterator[Document]:
    """Yield the documents of ``cfg``'s source in a deterministic order, counting into ``stats``.

    Reads every shard of ``source_shards`` in order with ``read_shard``; stops after
    ``cfg.max_documents`` kept documents when that is positive. ``options``: how the calling
    command spells the source options in its errors (default: prepare's ``--source.*``).
    """
    for shard in source_shards(cfg, options):
        for document in read_shard(cfg, shard, stats, options):
            yield document
            if cfg.max_documents > 0 and stats.kept >= cfg.max_documents:
                return


def _account(item: Item, on_error: str, stats: ReadStats, options: SourceOptions) -> Document | None:
    """Count one item; the document to keep, or None (skipped), or raise under ``on_error: raise``
    with the item's message, its fix and the on_error hint in the command's spelling."""
    stats.read += 1
    if isinstance(item, Document) and (not item.text or item.text.isspace()):  # isspace: no copy of a huge text
        item = BadDocument(item.id, "empty", f"{item.id} is empty (whitespace only): remove it")
    if isinstance(item, BadDocument):
        if on_error == "raise":
            hint = options.hint(item.fix)
            message = f"{item.message}: {hint}" if hint else item.message
            if options.on_error:
                message += f", or set on_error: skip ({options.on_error} skip)"
            raise DataError(message)
        stats.record_skip(item.id, item.reason)
        return None
    stats.kept += 1
    return item


def _shard_items(cfg: SourceConfig, shard: str) -> Iterator[Item]:
    if cfg.kind == "stdlib":
        rel = os.path.relpath(shard, _stdlib_root()).replace(os.sep, "/")
        yield read_text_file(shard, rel)
    elif cfg.kind == "crawl":
        from lmforge.data.crawl import crawl  # written separately; imported only when crawling

        yield from crawl(cfg.crawl)
    elif cfg.kind in FILE_KINDS:
        yield from reader_for(cfg.kind).read_file(shard, cfg)
    else:
        raise DataError(f"unknown source.kind '{cfg.kind}': use stdlib, crawl or one of {', '.join(FILE_KINDS)}")


def _is_zero_bytes(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:  # let the reader report why the file cannot be read
        return False


def _stdlib_root() -> str:
    return sysconfig.get_paths()["stdlib"]
