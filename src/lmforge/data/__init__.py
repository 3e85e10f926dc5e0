"""Data: raw sources -> documents -> train/val JSON lines -> token shards -> training windows.

    from lmforge.data import read_documents, prepare, encode_documents, TokenShard, WindowSampler

Names are imported on first use (PEP 562), so ``import lmforge.data`` stays cheap: the
tokenizer worker processes of ``encode_documents`` import this package, and should not pay
for importing torch (needed only by ``get_batch``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Document": "document", "BadDocument": "document", "ReadStats": "document", "SourceOptions": "document",
    "read_documents": "sources", "source_shards": "sources", "read_shard": "sources",
    "encode_documents": "encode",
    "TokenShard": "shards", "check_tokenizer_matches": "shards", "token_dtype": "shards",
    "read_meta": "shards",
    "WindowSampler": "sampler", "get_batch": "sampler",
}

# `prepare` is both a submodule and a function: bind the function now, after importing the
# submodule, or the first `import lmforge.data.prepare` elsewhere (the pipeline does one)
# would replace this package's `prepare` attribute with the module. prepare.py is cheap.
from lmforge.data.prepare import prepare, split_fraction  # noqa: E402, F401 (re-exported; __all__ below)

__all__ = sorted([*_EXPORTS, "prepare", "split_fraction"])

if TYPE_CHECKING:  # for type checkers only: the names load lazily through __getattr__
    from lmforge.data.document import BadDocument, Document, ReadStats, SourceOptions  # noqa: F401
    from lmforge.data.encode import encode_documents  # noqa: F401
    from lmforge.data.sampler import WindowSampler, get_batch  # noqa: F401
    from lmforge.data.shards import TokenShard, check_tokenizer_matches, read_meta, token_dtype  # noqa: F401
    from lmforge.data.sources import read_documents, read_shard, source_shards  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lmforge.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"lmforge.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
