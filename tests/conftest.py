"""Shared fixtures: a tiny corpus prepared, tokenized and encoded once per session."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

# Two cores: keep each test process from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))

WORDS = ["alpha", "beta", "gamma", "delta", "value", "index", "total", "count", "name", "item"]


def make_corpus(root: Path, num_files: int = 24, seed: int = 0) -> Path:
    """Write small Python-like files with enough regularity for a model to learn."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(num_files):
        lines = [f'"""Module {i}: helpers for {rng.choice(WORDS)}."""', ""]
        for j in range(rng.randint(3, 6)):
            a, b = rng.sample(WORDS, 2)
            lines += [f"def {a}_{j}({b}, {a}=None):",
                      f"    \"\"\"Return the {b} of {a}.\"\"\"",
                      f"    if {a} is None:",
                      f"        {a} = {rng.randint(0, 99)}",
                      f"    return {b} + {a}", ""]
        (root / f"mod_{i:02d}.py").write_text("\n".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    """prepare -> tokenizer -> encode on a generated corpus; returns the paths."""
    from lmforge import config as C
    from lmforge.data import encode_documents, prepare
    from lmforge.tokenize.documents import train_tokenizer_on_documents

    base = tmp_path_factory.mktemp("tiny")
    corpus = make_corpus(base / "corpus")
    docs, tok, shards = base / "documents", base / "tokenizer", base / "shards"
    prepare(C.PrepareConfig(source=C.SourceConfig(kind="text", paths=[str(corpus)]), out_dir=str(docs),
                            val_fraction=0.2))
    train_tokenizer_on_documents(C.TokenizerConfig(kind="byte_bpe", input=str(docs / "train.jsonl"),
                                                   out_dir=str(tok), vocab_size=320, min_frequency=2))
    encode_documents(C.EncodeConfig(documents_dir=str(docs), tokenizer_dir=str(tok), out_dir=str(shards),
                                    num_workers=1))
    return {"corpus": corpus, "documents": docs, "tokenizer": tok, "shards": shards, "base": base}


def tiny_pretrain_config(tiny_run: dict[str, Path], run_dir: Path, **train_overrides):
    """A PretrainConfig for llama-tiny on the tiny corpus (a few seconds of training)."""
    from lmforge import config as C

    overrides = {
        "model.preset": "llama-tiny", "model.max_seq_len": 32, "model.vocab_size": 0,
        "optim.lr": 3e-3, "optim.warmup_steps": 2,
        "train.shards_dir": str(tiny_run["shards"]), "train.tokenizer_dir": str(tiny_run["tokenizer"]),
        "train.run_dir": str(run_dir), "train.seq_len": 32, "train.batch_size": 4,
        "train.max_steps": 8, "train.eval_interval": 4, "train.eval_batches": 2, "train.log_interval": 1,
        "train.device": "cpu", "train.seed": 0,
    }
    overrides.update({f"train.{k}" if "." not in k else k: v for k, v in train_overrides.items()})
    return C.load_config(C.PretrainConfig, None, overrides)
