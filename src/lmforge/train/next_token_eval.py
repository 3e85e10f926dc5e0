"""Loss, perplexity and bits per byte of next-token prediction on held-out text.

Bits per byte divides the summed negative log-likelihood (in bits) by the UTF-8 byte count
of the text it covers, so models with different tokenizers can be compared (as in the
GPT-2/Pile/nanochat evaluations): a tokenizer with longer tokens has fewer, harder
predictions per byte and the measure stays fair.

The token stream (documents joined, each ending with eos) is cut into non-overlapping
windows of ``seq_len``; every token after the first is predicted once. Windows do not see
the previous window's tokens, which makes the figure slightly pessimistic versus a sliding
window but cheap and deterministic. Used by the causal-LM task (periodic and final
validation) and by `lmforge evaluate`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lmforge.objectives import token_loss_sum
from lmforge.train.precision import autocast_context


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


def whole_documents(shard, max_tokens: int = 0) -> tuple[np.ndarray, int]:
    """The tokens of a ``TokenShard``'s first whole documents (at most ``max_tokens`` tokens, 0 =
    all) and their UTF-8 byte count: cut at a document boundary so tokens and bytes cover the
    same text."""
    num_docs = len(shard.doc_num_bytes)
    if max_tokens:
        num_docs = max(1, int(np.searchsorted(shard.doc_offsets, max_tokens, side="right")) - 1)
        num_docs = min(num_docs, len(shard.doc_num_bytes))
    end = int(shard.doc_offsets[num_docs])
    return shard.tokens[:end], int(np.sum(shard.doc_num_bytes[:num_docs]))


def evaluate_shard(model: torch.nn.Module, shard, seq_len: int, batch_size: int, device: torch.device,
                   max_tokens: int = 0, precision: str = "fp32") -> dict[str, float]:
    """Evaluate on whole documents of a ``TokenShard`` (at most ``max_tokens`` tokens)."""
    tokens, num_bytes = whole_documents(shard, max_tokens)
    nats, count = loss_on_stream(model, tokens, seq_len, batch_size, device, precision)
    return summarize(nats, count, num_bytes)
