"""Prepared document files (JSON lines of ``{id, text, meta}``) and atomic file replacement.

Outputs are written to a hidden temporary sibling and renamed into place (``os.replace`` is
atomic on POSIX and Windows), so a crash or Ctrl-C never leaves a half-written file under
the final name for a later step to trust.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import IO, Any

from lmforge.data.document import Document
from lmforge.errors import DataError


def tmp_sibling(path: str) -> str:
    """A temporary name next to ``path`` (same file system, so the final rename is atomic)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp-{os.getpid()}")


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    tmp = tmp_sibling(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


class AtomicJsonlWriter:
    """Documents to a temporary sibling of ``path``; ``commit`` renames it into place,
    ``discard`` removes it (call it in a ``finally``: after a commit it does nothing)."""

    def __init__(self, path: str):
        self.path, self.tmp = path, tmp_sibling(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.file = open(self.tmp, "w", encoding="utf-8")

    def write(self, doc: Document) -> None:
        write_document(self.file, doc)

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def write_document(f: IO[str], doc: Document) -> None:
    f.write(json.dumps({"id": doc.id, "text": doc.text, "meta": doc.meta}, ensure_ascii=False))
    f.write("\n")


def read_document_file(path: str) -> Iterator[Document]:
    """Documents of a prepared JSONL file; a malformed line means the file is damaged: DataError."""
    if not os.path.isfile(path):
        raise DataError(f"documents file '{path}' not found: run `lmforge prepare` first "
                        f"or point --documents_dir at its out_dir")
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                obj = json.loads(line.decode("utf-8"))
                doc = Document(obj["id"], obj["text"], obj.get("meta", {}))
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}:{lineno} is not a prepared document ({{id, text, meta}}): "
                                f"re-run `lmforge prepare`") from None
            yield doc
