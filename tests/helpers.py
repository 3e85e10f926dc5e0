"""Small helpers shared by several test files (import as `from helpers import ...`)."""

from __future__ import annotations

import hashlib
from typing import Optional

import torch

from lmforge.config import SourceConfig
from lmforge.data import Document, ReadStats, read_documents


def randomise(model: torch.nn.Module, seed: Optional[int] = 0, matrix_std: float = 0.1,
              vector_std: float = 0.5) -> torch.nn.Module:
    """Every tensor random (norm gains, biases and position biases too), so weight mappings are
    exercised: matrices ~ N(0, matrix_std), vectors ~ N(1, vector_std). Eval mode.
    ``seed=None`` draws from the current RNG state."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, matrix_std if param.dim() > 1 else vector_std).add_(1.0 if param.dim() == 1 else 0.0)
    return model.eval()


def read_source(cfg: SourceConfig) -> tuple[list[Document], ReadStats]:
    """Every document of ``cfg`` and the read's stats, checking the books balance."""
    stats = ReadStats()
    docs = list(read_documents(cfg, stats))
    assert stats.read == stats.kept + sum(stats.skipped.values())
    assert stats.kept == len(docs)
    return docs, stats


def write_file(path, data: bytes | str) -> str:
    """Write ``data`` (text as UTF-8) to ``path``, making its folders; returns the path as str."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def documented_split_fraction(split_seed: int, text: str) -> float:
    """The train/val split rule as the docs state it, from hashlib rather than lmforge: the
    first 64 bits of BLAKE2b(text, key=str(split_seed)), little-endian, over 2**64; a document
    goes to val when this is below val_fraction."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(split_seed).encode()).digest()
    return int.from_bytes(digest, "little") / 2.0**64
