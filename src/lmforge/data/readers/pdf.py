"""PDF files: one document per file, the text layer of its pages (pypdf), pages joined by blank lines.

No OCR: a scanned PDF without a text layer is ``no_text_layer``. A PDF that needs a
password is ``encrypted`` (one readable with the empty user password, as many
"copy-protected" files are, is read). ``meta`` holds ``pages`` and, when the PDF's
info dictionary has them, ``title`` and ``author``.

pypdf raises many exception types on damaged files (its own ``PdfReadError``, but also
``ValueError``, ``KeyError``, ``TypeError``... from deep inside its object parser), so any
exception while parsing one file is counted as ``bad_pdf`` for that file; the scope of that
catch is only the pypdf calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, one_line, require, unreadable

SUFFIXES = (".pdf",)
DEPENDENCY = ("pypdf", "reading PDF files", "data")  # checked before any file is read


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    pypdf = require("pypdf", "reading PDF files")
    # pypdf logs a warning for every small defect it repairs; a corpus of PDFs would bury
    # the run's own messages.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        yield unreadable(path, path, err)
        return
    try:
        yield _pdf_document(pypdf, path, data)
    except Exception as err:  # noqa: BLE001 - see the module docstring
        yield BadDocument(path, "bad_pdf", f"{path} is not a readable PDF ({one_line(err)}): "
                                           f"re-create it or remove it")


def _pdf_document(pypdf, path: str, data: bytes) -> Item:
    import io

    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not _opens_without_password(reader):
        return BadDocument(path, "encrypted", f"{path} is encrypted (it needs a password): decrypt it first")
    pages = [page.extract_text() or "" for page in reader.pages]
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        return BadDocument(path, "no_text_layer", f"{path} has no text layer (a scan?): run OCR on it first")
    meta: dict[str, Any] = {"source": path, "pages": len(pages)}
    info = reader.metadata
    for key, name in (("/Title", "title"), ("/Author", "author")):
        value = info.get(key) if info else None
        if isinstance(value, str) and value.strip():
            meta[name] = value.strip()
    return Document(path, text, meta)


def _opens_without_password(reader) -> bool:
    try:
        return bool(reader.decrypt(""))
    except Exception:  # noqa: BLE001 - an unsupported cipher is as closed as a wrong password
        return False
