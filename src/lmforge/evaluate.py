"""`lmforge evaluate`: a checkpoint's figures on held-out text, by the task it was trained on.

The task is the one the checkpoint's ``task`` section names (else its model family's default):
a causal LM reports loss, perplexity and bits per byte (`train.next_token_eval`), a masked LM
its masked-token loss and accuracy, span corruption its span loss and exact span accuracy
(`Task.report`). Data is a token-shards directory (one split, cut at a document boundary) or a
text/JSONL file tokenized here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.config import EvaluateConfig
from lmforge.errors import ConfigError, DataError


def _tokens_from_text_source(path: Path, tokenizer) -> tuple[np.ndarray, int]:
    """Tokenize a text or JSONL file (documents end with eos) for evaluation."""
    from lmforge.config import SourceConfig
    from lmforge.data import ReadStats, SourceOptions, read_documents

    kind = "jsonl" if path.suffix in (".jsonl", ".gz") else "text"
    eos_id = tokenizer.require_id("eos", "evaluating on a text file (documents end with eos)")
    ids: list[int] = []
    num_bytes = 0
    source = SourceConfig(kind=kind, paths=[str(path)])
    for doc in read_documents(source, ReadStats(), SourceOptions.single("--data")):
        ids.extend(tokenizer.encode(doc.text))
        ids.append(eos_id)
        num_bytes += len(doc.text.encode("utf-8"))
    if len(ids) < 2:
        raise DataError(f"'{path}' holds no text to evaluate on: pass a non-empty file")
    return np.asarray(ids, dtype=np.int64), num_bytes


def checkpoint_task(ckpt_dir: Path, model_cfg: Any, tokenizer: Any):
    """The task a checkpoint was trained on: its ``task`` section, else its family's default;
    ConfigError when the checkpoint's head is not the one that task trains (a classifier)."""
    from lmforge.train.checkpoint import read_checkpoint_info
    from lmforge.train.tasks import TaskContext, build_task, default_task

    info = read_checkpoint_info(ckpt_dir)
    name, options = (info.task.name, dict(info.task.options)) if info.task else (default_task(model_cfg.family), {})
    task = build_task(name, options, TaskContext(tokenizer, model_cfg))
    if task.head != info.head.name:
        raise ConfigError(f"checkpoint '{ckpt_dir}' is a {info.head.name} model, and `lmforge evaluate` measures "
                          f"the task {name}, which trains a {task.head} head: evaluate a pretraining checkpoint")
    return task


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """`lmforge evaluate`: load a checkpoint and report its task's figures (`Task.report`)."""
    from lmforge.data import TokenShard, check_tokenizer_matches
    from lmforge.train.checkpoint import load_checkpoint
    from lmforge.train.next_token_eval import whole_documents
    from lmforge.train.parallel import World, resolve_device

    device = resolve_device(cfg.device, World())
    model, tokenizer, ckpt_dir = load_checkpoint(cfg.checkpoint, device)
    if cfg.seq_len > model.config.max_seq_len:
        raise ConfigError(f"config key 'seq_len': expected at most the model's max_seq_len "
                          f"{model.config.max_seq_len} (or 0 for it), got {cfg.seq_len}")
    seq_len = cfg.seq_len or model.config.max_seq_len
    data = Path(cfg.data)
    if not cfg.data or not data.exists():
        raise DataError(f"evaluation data '{cfg.data}' not found: pass --data with a shards "
                        "directory from `lmforge encode` or a text/JSONL file")
    if data.is_dir():
        check_tokenizer_matches(data, tokenizer)
        tokens, num_bytes = whole_documents(TokenShard(data, cfg.split), cfg.max_tokens)
    else:
        tokens, num_bytes = _tokens_from_text_source(data, tokenizer)
    task = checkpoint_task(ckpt_dir, model.config, tokenizer)
    result = task.report(model, tokens, num_bytes, seq_len, cfg.batch_size, device, "fp32")
    result["checkpoint"] = str(ckpt_dir)
    result["data"] = str(data)
    return result


def format_result(result: dict[str, Any]) -> str:
    """One human line of the figures, then the JSON record."""
    figures = "  ".join(f"{key.replace('_', ' ')} {value:.4f}" for key, value in result.items()
                        if isinstance(value, float))
    return f"{figures}  ({result['tokens']:,} tokens)\n" + json.dumps(result)
