"""JSON lines (``.jsonl``, ``.ndjson``, ``.json``; plain, ``.gz`` or ``.zst``): one document per object line.

The text is the string field named by ``source.text_field``. Lines are streamed, so a file
may be larger than memory; blank lines are not documents and are passed over. A damaged
compressed file keeps the documents before the damage and counts one ``truncated_<codec>``
or ``bad_<codec>`` skip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import LONE_SURROGATE, Item, unreadable
from lmforge.data.readers.compression import CorruptStream, open_binary

SUFFIXES = tuple(base + codec for base in (".jsonl", ".ndjson", ".json") for codec in ("", ".gz", ".zst"))


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    lineno = 0
    try:
        with open_binary(path) as f:
            while True:
                raw = f.readline()
                if not raw:
                    break
                lineno += 1
                if raw.isspace():
                    continue
                where = f"{path}:{lineno}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield BadDocument(where, "not_utf8", f"{where} is not valid UTF-8 (byte {err.start} "
                                                         f"of the line): re-encode the file as UTF-8")
                    continue
                # Drop the bytes before parsing: a 100 MB line then peaks at about twice its size.
                raw = None
                yield parse_line(path, lineno, line, cfg.text_field)
                line = None
    except CorruptStream as err:
        yield BadDocument(f"{path}:{lineno + 1}", err.reason, err.describe(path, f"line {lineno}"))
    except OSError as err:
        yield unreadable(f"{path}:{lineno + 1}" if lineno else path, path, err)


def parse_line(path: str, lineno: int, line: str, text_field: str) -> Item:
    """The document of one JSON line, or why it is not one."""
    where = f"{path}:{lineno}"
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as err:
        detail = f"{err.msg} at column {err.colno}" if isinstance(err, json.JSONDecodeError) else "too deeply nested"
        return BadDocument(where, "bad_json", f"{where} is not valid JSON ({detail}): fix the line")
    text = obj.get(text_field) if isinstance(obj, dict) else None
    if not isinstance(text, str):
        fields = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
        return BadDocument(where, "missing_field", f"{where} has no string field '{text_field}' "
                                                   f"(found: {fields})", fix="text_field")
    # Valid UTF-8 holds no surrogates, so one can only come from a \\u escape: the fast substring
    # test spares the regex scan for most lines.
    if "\\u" in line and LONE_SURROGATE.search(text):
        return BadDocument(where, "not_utf8", f"{where} has a lone surrogate escape (\\ud8xx) in its text: "
                                              f"fix the line")
    return Document(where, text, {"source": path, "line": lineno})
