"""`lmforge tokenizer`: train a tokenizer on prepared JSONL documents and save it."""

from __future__ import annotations

from pathlib import Path

from lmforge.config import SourceConfig, TokenizerConfig
from lmforge.errors import TokenizerError


def train_tokenizer_on_documents(cfg: TokenizerConfig):
    """Read ``cfg.input`` (JSONL from `lmforge prepare`), train, save to ``cfg.out_dir``."""
    from lmforge.data import ReadStats, SourceOptions, read_documents
    from lmforge.tokenize import train_tokenizer

    if not Path(cfg.input).is_file():
        raise TokenizerError(f"tokenizer input '{cfg.input}' not found: run `lmforge prepare` first "
                             "or pass --input with a JSONL file of documents")
    documents = read_documents(SourceConfig(kind="jsonl", paths=[cfg.input]), ReadStats(),
                               SourceOptions.single("--input"))
    tokenizer = train_tokenizer((doc.text for doc in documents), cfg)
    tokenizer.save(cfg.out_dir)
    return tokenizer
