"""What every reader shares: the item type it yields and the messages of common failures.

A reader is a module with ``read_file(path, cfg) -> Iterator[Item]``: it yields a
``Document`` for each usable record of one input file and a ``BadDocument`` (reason code +
one-line message naming the file) for each unusable one. Readers never raise for bad
data; ``lmforge.data.sources.read_shard`` decides between raising and counting.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Union

from lmforge.data.document import BadDocument, Document
from lmforge.errors import DataError

Item = Union[Document, BadDocument]

# A lone UTF-16 surrogate (from a JSON "\ud800" escape or an undecodable byte kept by
# surrogateescape) cannot be written back as UTF-8. Searching for one does not copy the
# text, unlike a trial ``text.encode()``, which matters for a 100 MB document.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def unreadable(doc_id: str, path: str, err: OSError) -> BadDocument:
    """The OS refused to open or read ``path``."""
    why = err.strerror or str(err)
    return BadDocument(doc_id, "unreadable", f"cannot read {path} ({why}): fix its permissions")


def one_line(detail: object, limit: int = 160) -> str:
    """A library's error text squeezed to one short line (some span several lines)."""
    text = " ".join(str(detail).split())
    return text[:limit] if text else type(detail).__name__


def require(module: str, purpose: str, extra: str = "data") -> ModuleType:
    """Import an optional dependency, or say which lmforge extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"{purpose} needs {module.split('.')[0]}: pip install lmforge[{extra}]") from None
