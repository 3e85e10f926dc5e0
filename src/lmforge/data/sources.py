"""Read raw documents from a source: the stdlib, text files, JSON lines or Parquet.

Each reader yields ``Document``s, or a ``BadDocument`` for anything it cannot use;
``read_documents`` does the bookkeeping in one place: it counts every item, drops
whitespace-only documents as ``empty``, and either raises on the first bad document
(``on_error: raise``) or counts it by reason and goes on (``on_error: skip``).

Skip reasons: ``not_utf8``, ``binary`` (a NUL byte: not text), ``empty``, ``unreadable``
(the OS refused to read the file), ``bad_json``, ``missing_field`` (no string text field),
``truncated_gzip`` (the stream ends early: documents before the cut are kept), ``bad_gzip``,
``bad_parquet``.
"""

from __future__ import annotations

import gzip
import json
import os
import sysconfig
import zlib
from collections.abc import Iterator
from typing import Union

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document, ReadStats
from lmforge.data.paths import expand_paths, walk_files
from lmforge.errors import DataError

Item = Union[Document, BadDocument]

# The stdlib corpus leaves out test suites (CPython's test/ is large and full of deliberately
# odd files) and third-party packages installed next to the stdlib.
_STDLIB_SKIP_DIRS = ("test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
_PARQUET_BATCH_ROWS = 1024


def read_documents(cfg: SourceConfig, stats: ReadStats) -> Iterator[Document]:
    """Yield the documents of ``cfg``'s source in a deterministic order, counting into ``stats``.

    Bad documents raise ``DataError`` (naming the file and line) under ``on_error: raise``, or
    are counted in ``stats.skipped`` under ``on_error: skip``. The stdlib source always skips:
    it is our own built-in corpus, and a few of its files are empty or not UTF-8 on purpose.
    Stops after ``cfg.max_documents`` kept documents when that is positive.
    """
    on_error = "skip" if cfg.kind == "stdlib" else cfg.on_error
    for item in _items(cfg):
        stats.read += 1
        if isinstance(item, Document) and not item.text.strip():
            item = BadDocument(item.id, "empty", f"{item.id} is empty (whitespace only): remove it")
        if isinstance(item, BadDocument):
            if on_error == "raise":
                raise DataError(f"{item.message}, or pass --source.on_error skip")
            stats.record_skip(item.id, item.reason)
            continue
        stats.kept += 1
        yield item
        if cfg.max_documents > 0 and stats.kept >= cfg.max_documents:
            return


def _items(cfg: SourceConfig) -> Iterator[Item]:
    if cfg.kind == "stdlib":
        root = sysconfig.get_paths()["stdlib"]
        for path in walk_files(root, (".py",), _STDLIB_SKIP_DIRS):
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            yield _text_file(path, rel)
    elif cfg.kind == "text":
        for path in expand_paths(cfg.paths, cfg.kind, None):
            yield _text_file(path, path)
    elif cfg.kind == "jsonl":
        for path in expand_paths(cfg.paths, cfg.kind, _JSONL_SUFFIXES):
            yield from _jsonl_file(path, cfg.text_field)
    elif cfg.kind == "parquet":
        pq = _import_parquet()
        for path in expand_paths(cfg.paths, cfg.kind, (".parquet",)):
            yield from _parquet_file(pq, path, cfg.text_field)
    else:
        raise DataError(f"unknown source.kind '{cfg.kind}': use stdlib, text, jsonl or parquet")


def _text_file(path: str, doc_id: str) -> Item:
    """One file, one document. A NUL byte marks a binary file (the heuristic git and grep use)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        return BadDocument(doc_id, "unreadable", f"cannot read {path} ({err.strerror}): fix its permissions")
    if b"\x00" in data:
        return BadDocument(doc_id, "binary", f"{path} looks binary (it has NUL bytes): "
                                             f"remove it from --source.paths")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadDocument(doc_id, "not_utf8", f"{path} is not valid UTF-8 (byte {err.start}): "
                                               f"re-encode it as UTF-8")
    return Document(doc_id, text.removeprefix("\ufeff"), {"source": path})


def _jsonl_file(path: str, text_field: str) -> Iterator[Item]:
    """One document per JSON object line; blank lines are not documents and are passed over."""
    opener = gzip.open if path.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if raw.strip():
                    yield _jsonl_line(path, lineno, raw, text_field)
    except EOFError:
        yield BadDocument(f"{path}:{lineno + 1}", "truncated_gzip",
                          f"{path} is a truncated gzip file (it ends after line {lineno}): "
                          f"re-create or re-download it")
    except (gzip.BadGzipFile, zlib.error) as err:
        yield BadDocument(f"{path}:{lineno + 1}", "bad_gzip",
                          f"{path} is not a valid gzip file after line {lineno} ({err}): re-create it")
    except OSError as err:
        yield BadDocument(f"{path}:{lineno + 1}" if lineno else path, "unreadable",
                          f"cannot read {path} ({err.strerror}): fix its permissions")


def _jsonl_line(path: str, lineno: int, raw: bytes, text_field: str) -> Item:
    where = f"{path}:{lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadDocument(where, "not_utf8", f"{where} is not valid UTF-8 (byte {err.start} of the line): "
                                              f"re-encode the file as UTF-8")
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as err:
        detail = f"{err.msg} at column {err.colno}" if isinstance(err, json.JSONDecodeError) else "too deeply nested"
        return BadDocument(where, "bad_json", f"{where} is not valid JSON ({detail}): fix the line")
    text = obj.get(text_field) if isinstance(obj, dict) else None
    if not isinstance(text, str):
        fields = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
        return BadDocument(where, "missing_field", f"{where} has no string field '{text_field}' "
                                                   f"(found: {fields}): pass --source.text_field NAME")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return BadDocument(where, "not_utf8", f"{where} has a lone surrogate escape (\\ud8xx) in its text: "
                                              f"fix the line")
    return Document(where, text, {"source": path, "line": lineno})


def _import_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install lmforge[parquet]") from None
    return pq


def _parquet_file(pq, path: str, text_field: str) -> Iterator[Item]:
    """One document per row of the ``text_field`` column, read in batches to bound memory."""
    import pyarrow as pa

    row = 0
    try:
        parquet = pq.ParquetFile(path)
        column = parquet.schema_arrow.field(text_field) if text_field in parquet.schema_arrow.names else None
        if column is None or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            found = ", ".join(parquet.schema_arrow.names)
            yield BadDocument(path, "missing_field", f"{path} has no string column '{text_field}' "
                                                     f"(found: {found}): pass --source.text_field NAME")
            return
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[text_field]):
            for text in batch.column(0).to_pylist():
                where = f"{path}:{row}"
                if text is None:
                    yield BadDocument(where, "missing_field", f"{where} has a null '{text_field}': fill or drop the row")
                else:
                    yield Document(where, text, {"source": path, "row": row})
                row += 1
    except pa.ArrowException as err:
        yield BadDocument(f"{path}:{row}", "bad_parquet",
                          f"{path} is not a readable Parquet file (at row {row}: {err}): re-create it")
    except OSError as err:
        yield BadDocument(f"{path}:{row}", "unreadable", f"cannot read {path} ({err}): fix its permissions")
