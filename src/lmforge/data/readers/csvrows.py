"""Split a CSV/TSV byte stream into rows (RFC 4180), streaming, memory bounded by the largest row.

Why not the stdlib ``csv`` module: it assembles every field in a buffer of 4-byte code
points, so one 100 MB field peaked at 737 MB (measured with tracemalloc), and by default
it refuses fields over 128 KiB. This splitter works on the UTF-8 bytes (a quote, delimiter
or newline byte never occurs inside a multi-byte UTF-8 sequence), searches with
``bytes.find`` (C speed), and decodes only the fields asked for, straight from the line
buffer: a 100 MB field costs its line plus its text.

Dialect, as the csv module's default: fields are separated by ``delimiter``; a field that
starts with ``"`` is quoted, may hold delimiters and newlines, and writes a quote as ``""``;
a quote inside an unquoted field is an ordinary character. A quoted field never closed, or
text between a closing quote and the next delimiter, makes the row malformed (``error``).
Undecodable bytes are kept as lone surrogates (``surrogateescape``) and flagged in ``Row.not_utf8``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple


class Row(NamedTuple):
    """One row: the wanted fields' text (None for fields not asked for)."""

    line: int  # physical line the row starts on, 1-based
    fields: list[str | None]
    error: str  # '' when well formed
    not_utf8: bool  # a wanted field held invalid UTF-8 (kept as lone surrogates)


def iter_rows(stream: BinaryIO, delimiter: str, wanted: Callable[[int], bool]) -> Iterator[Row]:
    """Rows of ``stream``; ``wanted(i)`` says whether field ``i`` is decoded. A blank line is a row of no fields."""
    sep = delimiter.encode()
    line_no = 0
    while True:
        line = stream.readline()
        if not line:
            return
        line_no += 1
        start = line_no
        fields: list[str | None] = []
        if line in (b"\n", b"\r\n"):
            yield Row(start, fields, "", False)
            continue
        error = ""
        not_utf8 = False
        pos = 0
        pieces: list[memoryview] | None = None  # the parts of a quoted field being read
        while True:
            end = len(line) - (2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0)
            if pieces is None:  # at the start of a field
                if line[pos: pos + 1] != b'"':
                    stop = line.find(sep, pos, end)
                    if wanted(len(fields)):
                        text, valid = _decode([memoryview(line)[pos: end if stop < 0 else stop]], False)
                        fields.append(text)
                        not_utf8 |= not valid
                    else:
                        fields.append(None)
                    if stop < 0:
                        break
                    pos = stop + len(sep)
                    continue
                pieces = []
                pos += 1
            close = _closing_quote(line, pos)
            if close < 0:  # the quoted field goes on past this line
                pieces.append(memoryview(line)[pos:])
                line = stream.readline()
                if not line:
                    error = "a quoted field is never closed"
                    break
                line_no += 1
                pos = 0
                continue
            pieces.append(memoryview(line)[pos:close])
            if wanted(len(fields)):
                text, valid = _decode(pieces, True)
                fields.append(text)
                not_utf8 |= not valid
            else:
                fields.append(None)
            pieces = None
            pos = close + 1
            if pos >= end:
                break
            if line[pos: pos + len(sep)] != sep:
                error = "text after a closing quote"
                break
            pos += len(sep)
            if pos >= end:  # a delimiter right before the line end: one more, empty field
                fields.append("" if wanted(len(fields)) else None)
                break
        yield Row(start, fields, error, not_utf8)


def _closing_quote(line: bytes, pos: int) -> int:
    """Index of the quote closing a quoted field from ``pos`` (skipping ``""`` pairs), or -1."""
    quote = line.find(b'"', pos)
    while quote >= 0 and line[quote + 1: quote + 2] == b'"':
        quote = line.find(b'"', quote + 2)
    return quote


def _decode(pieces: list[memoryview], quoted: bool) -> tuple[str, bool]:
    """The field's text and whether it was valid UTF-8 (strict first: the common, fast case)."""
    data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    try:
        text, valid = str(data, "utf-8"), True
    except UnicodeDecodeError:
        text, valid = str(data, "utf-8", "surrogateescape"), False
    return (text.replace('""', '"') if quoted and '""' in text else text), valid
