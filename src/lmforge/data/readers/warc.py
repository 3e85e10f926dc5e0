"""WARC archives (``.warc``, ``.warc.gz``): each HTML response record becomes a document of its main text.

Streamed record by record with warcio. Which records count:

- ``response`` (and ``resource``) records are the candidate documents; ``warcinfo``,
  ``request``, ``metadata`` records describe the crawl, hold no page, and are passed over
  like blank lines.
- a record with no HTTP body is ``no_payload``; an HTTP status outside 2xx is ``http_status``
  (an error or redirect page is not content); a non-HTML content type (images, PDF,
  JSON, ...) is ``not_html``; HTML from which no main text can be extracted (no
  ``<body>``, boilerplate only) is ``no_main_text``.

The document id is ``<archive path>:<byte offset of the record>`` (enough to seek to it);
``meta`` holds ``url`` (WARC-Target-URI), ``warc_record_id`` and ``date`` (WARC-Date).

Truncated archives: warcio yields a record cut short without complaint, and silently stops
at a ``.warc.gz`` member cut short. We compare each record's block with its declared
Content-Length, and check that nothing but blank lines follows the last record; either
failure is one ``truncated_warc`` skip, and the records before it are kept. Garbage that
warcio cannot parse as a record is ``bad_warc``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, one_line, require, unreadable
from lmforge.data.readers.html import MAX_HTML_BYTES, extract_main_text

SUFFIXES = (".warc", ".warc.gz")
DEPENDENCY = ("warcio", "reading WARC archives", "data")  # checked before any file is read
_PAGE_RECORD_TYPES = ("response", "resource")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_LOOKS_LIKE_HTML = re.compile(rb"^\s*(?:<!doctype\s+html|<html)", re.I)
_TAIL_PROBE_BYTES = 4096


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    require("warcio", "reading WARC archives")
    from warcio.archiveiterator import ArchiveIterator

    end_of_last = 0  # byte offset just after the last complete record
    num_records = 0
    try:
        with open(path, "rb") as f:
            archive = ArchiveIterator(f)
            records = iter(archive)
            while True:
                try:
                    read = _next_record(archive, records)
                except _Damaged as damage:
                    yield _bad_warc(path, end_of_last, num_records, damage.__cause__)
                    return
                if read is None:
                    break
                if _block_cut_short(read.record):
                    yield _truncated(path, read.offset, num_records)
                    return
                num_records += 1
                end_of_last = read.offset + read.length
                if read.record.rec_type in _PAGE_RECORD_TYPES:
                    yield _page(path, read.offset, read.record, read.payload)
            if _junk_after(f, end_of_last):
                yield _truncated(path, end_of_last, num_records)
    except OSError as err:
        yield unreadable(f"{path}:{end_of_last}", path, err)


class _RecordRead(NamedTuple):
    record: Any  # warcio's ArcWarcRecord
    payload: bytes  # the HTTP body, decoded from chunked/gzip transfer (pages only)
    offset: int  # byte offset of the record in the archive
    length: int  # its length in the archive (compressed, for .warc.gz)


class _Damaged(Exception):
    """warcio failed on the bytes of a record (its cause says how)."""


def _next_record(archive, records: Iterator) -> _RecordRead | None:
    """The next record with its payload (pages only), offset and length; None at the end.

    warcio raises ``ArchiveLoadFailed`` for what it recognises as malformed, but also
    ``AttributeError``, ``ValueError``... on damaged headers it does not expect, so every
    exception from warcio's parsing here means a damaged archive. Only warcio calls are in
    this scope; extraction and our own code run outside it.
    """
    try:
        record = next(records, None)
        if record is None:
            return None
        is_page = record.rec_type in _PAGE_RECORD_TYPES
        # Read the payload before asking for the offset: warcio finds a record's offset and
        # length by reading it to its end.
        payload = record.content_stream().read(MAX_HTML_BYTES + 1) if is_page else b""
        return _RecordRead(record, payload, archive.get_record_offset(), archive.get_record_length())
    except OSError as err:
        if err.errno is not None:  # the OS failed to read the file: not the archive's fault
            raise
        raise _Damaged() from err
    except Exception as err:  # noqa: BLE001 - see the docstring
        raise _Damaged() from err


def _bad_warc(path: str, offset: int, num_records: int, err: BaseException | None) -> BadDocument:
    return BadDocument(f"{path}:{offset}", "bad_warc", f"{path} is not a valid WARC archive after "
                                                       f"{num_records} records ({one_line(err)}): re-create it")


def _page(path: str, offset: int, record, payload: bytes) -> Item:
    """The document of one response record, or why it is not one."""
    headers = record.rec_headers
    url = headers.get_header("WARC-Target-URI") or ""
    doc_id = f"{path}:{offset}"
    where = f"{path} record at byte {offset} ({url or 'no URL'})"
    http = record.http_headers
    status = http.get_statuscode() if http is not None else None
    if status and not status.startswith("2"):
        return BadDocument(doc_id, "http_status", f"{where} has HTTP status {status}: not a page")
    if not payload.strip():
        return BadDocument(doc_id, "no_payload", f"{where} has no payload: nothing to extract")
    # A response declares its type in its HTTP headers; a resource record (no HTTP) in its WARC
    # headers; Common Crawl adds the type it sniffed as WARC-Identified-Payload-Type.
    content_type = (http.get_header("Content-Type") if http is not None else headers.get_header("Content-Type")) \
        or headers.get_header("WARC-Identified-Payload-Type") or ""
    if content_type:
        is_html = any(t in content_type.lower() for t in _HTML_TYPES)
    else:  # no declared type: sniff, as a browser would
        is_html = bool(_LOOKS_LIKE_HTML.match(payload[:1024]))
    if not is_html:
        return BadDocument(doc_id, "not_html", f"{where} is {content_type or 'not HTML'}, not HTML")
    if len(payload) > MAX_HTML_BYTES:
        return BadDocument(doc_id, "too_large", f"{where} is larger than {MAX_HTML_BYTES} bytes: "
                                                f"too large for HTML extraction")
    text = extract_main_text(payload, url)
    if text is None:
        return BadDocument(doc_id, "no_main_text", f"{where} has no extractable main text "
                                                   f"(no <body>, or only boilerplate)")
    meta = {"source": path, "url": url, "warc_record_id": headers.get_header("WARC-Record-ID"),
            "date": headers.get_header("WARC-Date")}
    return Document(doc_id, text, meta)


def _block_cut_short(record) -> bool:
    """The record's block ended before its declared Content-Length (the file was cut inside it)."""
    limit = getattr(record.raw_stream, "limit", 0)  # warcio's LimitReader counts down what is left
    return isinstance(limit, int) and limit > 0


def _junk_after(f, end_of_last: int) -> bool:
    """Bytes other than blank lines after the last record: a cut or damaged ``.gz`` member."""
    f.seek(end_of_last)
    return bool(f.read(_TAIL_PROBE_BYTES).strip())


def _truncated(path: str, offset: int, num_records: int) -> BadDocument:
    return BadDocument(f"{path}:{offset}", "truncated_warc",
                       f"{path} is a truncated WARC archive (it ends inside the record at byte {offset}, "
                       f"after {num_records} complete records): re-create or re-download it")
