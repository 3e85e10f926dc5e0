"""CSV and TSV files (plain, ``.gz`` or ``.zst``): one document per row, text in a named column.

The header row names the columns and ``source.text_field`` picks the text column; a file
without that column is one ``missing_field`` error for the whole file (not one per row),
naming the columns it does have. ``.tsv`` files are split on tabs. Rows are split by
``csvrows`` (the csv module's dialect, but no field size limit and a 100 MB field costs
about twice its size, not seven times); a malformed row is ``bad_csv``, a row too short
to have the column ``missing_field``, invalid UTF-8 ``not_utf8``: one skip per bad row,
never the end of the file. Ids are ``<path>:<row>``, rows counted from 0 after the header.
"""

from __future__ import annotations

from collections.abc import Iterator

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, unreadable
from lmforge.data.readers.compression import CorruptStream, open_binary
from lmforge.data.readers.csvrows import Row, iter_rows

SUFFIXES = tuple(base + codec for base in (".csv", ".tsv") for codec in ("", ".gz", ".zst"))


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    delimiter = "\t" if ".tsv" in path[-8:] else ","
    row = -1
    column = -1
    try:
        with open_binary(path) as stream:
            for parsed in iter_rows(stream, delimiter, lambda i: column < 0 or i == column):
                if column < 0:  # the header
                    header = [name or "" for name in parsed.fields]
                    if header:
                        header[0] = header[0].removeprefix("\ufeff")  # the BOM spreadsheet programs write
                    if parsed.error or cfg.text_field not in header:
                        found = f"unreadable header: {parsed.error}" if parsed.error else ", ".join(header)
                        yield BadDocument(path, "missing_field", f"{path} has no column '{cfg.text_field}' "
                                                                 f"(found: {found})", fix="text_field")
                        return
                    column = header.index(cfg.text_field)
                    continue
                row += 1
                if parsed.fields or parsed.error:  # a blank line, like a blank JSONL line, is not a document
                    yield _document(path, row, parsed, column, cfg.text_field)
    except CorruptStream as err:
        yield BadDocument(f"{path}:{row + 1}", err.reason, err.describe(path, f"row {row}"))
    except OSError as err:
        yield unreadable(f"{path}:{row + 1}" if row >= 0 else path, path, err)


def _document(path: str, row: int, parsed: Row, column: int, text_field: str) -> Item:
    where = f"{path}:{row}"
    if parsed.error:
        return BadDocument(where, "bad_csv", f"{path} row {row} (line {parsed.line}) is not valid CSV "
                                             f"({parsed.error}): fix the row")
    if column >= len(parsed.fields):
        return BadDocument(where, "missing_field", f"{path} row {row} (line {parsed.line}) has "
                                                   f"{len(parsed.fields)} fields, no '{text_field}': fix the row")
    text = parsed.fields[column] or ""
    if parsed.not_utf8:
        return BadDocument(where, "not_utf8", f"{path} row {row} (line {parsed.line}) is not valid UTF-8: "
                                              f"re-encode the file as UTF-8")
    if "\x00" in text:
        return BadDocument(where, "binary", f"{path} row {row} (line {parsed.line}) has NUL bytes: fix the row")
    return Document(where, text, {"source": path, "row": row})
