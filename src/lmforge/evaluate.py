"""Evaluation: loss, perplexity and bits per byte of a causal LM on held-out text.

Bits per byte divides the summed negative log-likelihood (in bits) by the UTF-8 byte count
of the text it covers, so models with different tokenizers can be compared (as in the
GPT-2/Pile/nanochat evaluations): a tokenizer with longer tokens has fewer, harder
predictions per byte and the measure stays fair.

The token stream (documents joined, each ending with eos) is cut into non-overlapping
windows of ``seq_len``; every token after the first is predicted once. Windows do not see
the previous window's tokens, which makes the figure slightly pessimistic versus a sliding
window but cheap and deterministic.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmforge.config import EvaluateConfig
from lmforge.errors import ConfigError, DataError
from lmforge.objectives import token_loss_sum


def autocast_context(device: torch.device, precision: str):
    """Autocast for bf16/fp16; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def loss_on_stream(model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                   device: torch.device, precision: str = "fp32") -> tuple[float, int]:
    """Sum of next-token losses (nats) and their count over a 1-D token array."""
    num_windows = math.ceil((len(tokens) - 1) / seq_len)
    total_nats, total_count = 0.0, 0
    was_training = model.training
    model.eval()
    for first in range(0, num_windows, batch_size):
        starts = range(first * seq_len, min(first + batch_size, num_windows) * seq_len, seq_len)
        inputs_BT = torch.zeros((len(starts), seq_len), dtype=torch.long)
        targets_BT = torch.full((len(starts), seq_len), -100, dtype=torch.long)
        for row, start in enumerate(starts):
            window = torch.from_numpy(np.asarray(tokens[start:start + seq_len + 1], dtype=np.int64))
            inputs_BT[row, :len(window) - 1] = window[:-1]
            targets_BT[row, :len(window) - 1] = window[1:]
        with autocast_context(device, precision):
            logits_BTV = model(inputs_BT.to(device))
        nats, count = token_loss_sum(logits_BTV, targets_BT.to(device))
        total_nats += float(nats)
        total_count += int(count)
    model.train(was_training)
    return total_nats, total_count


def summarize(total_nats: float, count: int, num_bytes: int) -> dict[str, float]:
    mean = total_nats / max(count, 1)
    return {
        "loss": mean,
        "perplexity": math.exp(min(mean, 50.0)),
        "bits_per_byte": total_nats / (math.log(2) * num_bytes) if num_bytes else float("nan"),
        "tokens": count,
        "bytes": num_bytes,
    }


def evaluate_shard(model: torch.nn.Module, shard, seq_len: int, batch_size: int, device: torch.device,
                   max_tokens: int = 0, precision: str = "fp32") -> dict[str, float]:
    """Evaluate on whole documents of a ``TokenShard`` (at most ``max_tokens`` tokens)."""
    num_docs = len(shard.doc_num_bytes)
    if max_tokens:
        # cut at a document boundary so tokens and bytes cover the same text
        num_docs = max(1, int(np.searchsorted(shard.doc_offsets, max_tokens, side="right")) - 1)
        num_docs = min(num_docs, len(shard.doc_num_bytes))
    end = int(shard.doc_offsets[num_docs])
    nats, count = loss_on_stream(model, shard.tokens[:end], seq_len, batch_size, device, precision)
    return summarize(nats, count, int(np.sum(shard.doc_num_bytes[:num_docs])))


def _tokens_from_text_source(path: Path, tokenizer) -> tuple[np.ndarray, int]:
    """Tokenize a text or JSONL file (documents end with eos) for evaluation."""
    from lmforge.config import SourceConfig
    from lmforge.data import ReadStats, SourceOptions, read_documents

    kind = "jsonl" if path.suffix in (".jsonl", ".gz") else "text"
    ids: list[int] = []
    num_bytes = 0
    source = SourceConfig(kind=kind, paths=[str(path)])
    for doc in read_documents(source, ReadStats(), SourceOptions.single("--data")):
        ids.extend(tokenizer.encode(doc.text))
        ids.append(tokenizer.eos_id)
        num_bytes += len(doc.text.encode("utf-8"))
    if len(ids) < 2:
        raise DataError(f"'{path}' holds no text to evaluate on: pass a non-empty file")
    return np.asarray(ids, dtype=np.int64), num_bytes


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """`lmforge evaluate`: load a checkpoint and report loss, perplexity, bits per byte."""
    from lmforge.data import TokenShard, check_tokenizer_matches
    from lmforge.train.checkpoint import load_checkpoint
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
        shard = TokenShard(data, cfg.split)
        tokens = shard.tokens[:cfg.max_tokens] if cfg.max_tokens else shard.tokens
    else:
        shard = None
        tokens, num_bytes = _tokens_from_text_source(data, tokenizer)
    if model.config.family in ("bert", "t5"):
        # no next-token likelihood: report the family's own objective (masked-token loss and
        # accuracy for BERT, span loss and exact span accuracy for T5)
        from lmforge.train.tasks import task_for

        task = task_for(model.config, tokenizer)
        metrics = task.evaluate(model, tokens, seq_len, cfg.batch_size, device, "fp32")
        result = {f"{task.name}_{key.removeprefix('val_')}": value for key, value in metrics.items()}
        result["tokens"] = len(tokens)
    elif shard is not None:
        result = evaluate_shard(model, shard, seq_len, cfg.batch_size, device, cfg.max_tokens)
    else:
        nats, count = loss_on_stream(model, tokens, seq_len, cfg.batch_size, device)
        result = summarize(nats, count, num_bytes)
    result["checkpoint"] = str(ckpt_dir)
    result["data"] = str(data)
    return result


def format_result(result: dict[str, Any]) -> str:
    """One human line of the figures, then the JSON record."""
    figures = "  ".join(f"{key.replace('_', ' ')} {value:.4f}" for key, value in result.items()
                        if isinstance(value, float))
    return f"{figures}  ({result['tokens']:,} tokens)\n" + json.dumps(result)
