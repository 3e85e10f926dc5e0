"""What the training loop optimises: one small object per objective, one loop for all.

A task turns sampled token windows into a batch and a batch into ``(loss, metrics)``
(DESIGN.md: ``loss, metrics = objective(model, batch)``), and measures itself on the val
split. The loop in ``loop.py`` knows nothing else about the objective, so masked LM (BERT)
and span corruption (T5) plug in here as further tasks without a second loop.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.evaluate import autocast_context, evaluate_shard, loss_on_stream
from lmforge.objectives import causal_lm_loss, masked_lm_loss, masked_token_accuracy

Batch = dict[str, torch.Tensor]


class Task(Protocol):
    name: str

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, seed: int) -> Batch:
        """``seed`` is fixed by (run seed, step, micro-batch slot): randomness in a batch (masking)
        is then the same after a resume and in any split of the global batch over processes."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]: ...

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        """Metrics on the whole val split for ``summary.json`` (keys start with ``val_``)."""


class CausalLMTask:
    """Next-token prediction: inputs ``w[:-1]``, targets ``w[1:]`` of each window of seq_len+1 tokens."""

    name = "causal_lm"

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch

        inputs_BT, targets_BT = get_batch(tokens, offsets, seq_len)
        return {"inputs": inputs_BT, "targets": targets_BT}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return causal_lm_loss(model(batch["inputs"]), batch["targets"]), {}

    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]:
        nats, count = loss_on_stream(model, tokens, seq_len, batch_size, device, precision)
        return {"val_loss": nats / max(count, 1)}

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        val = evaluate_shard(model, shard, seq_len, batch_size, device, precision=precision)
        return {"val_loss": val["loss"], "val_perplexity": val["perplexity"],
                "val_bits_per_byte": val["bits_per_byte"], "val_tokens": val["tokens"]}


class MaskedLMTask:
    """BERT's masked-LM objective (Devlin et al. 2019) on windows of ``seq_len`` tokens.

    Masking is dynamic (RoBERTa, Liu et al. 2019): each draw of a window gets fresh masks, from
    a generator seeded per micro-batch, so runs stay reproducible and resumable. Windows are
    packed across document boundaries (RoBERTa's FULL-SENTENCES), the eos token separating them.
    """

    name = "masked_lm"

    def __init__(self, tokenizer: Any, mask_prob: float = 0.15) -> None:
        self.mask_id, self.pad_id = tokenizer.mask_id, tokenizer.pad_id
        self.vocab_size = tokenizer.vocab_size
        self.special_ids = [tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id,
                            tokenizer.mask_id]
        self.mask_prob = mask_prob

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch
        from lmforge.masking import mask_tokens

        windows_BT, _ = get_batch(tokens, offsets, seq_len)
        inputs_BT, labels_BT = mask_tokens(windows_BT, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                           special_ids=self.special_ids, mask_prob=self.mask_prob,
                                           generator=torch.Generator().manual_seed(seed))
        return {"inputs": inputs_BT, "labels": labels_BT}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits_BTV = model(batch["inputs"])
        correct, count = masked_token_accuracy(logits_BTV, batch["labels"])
        return masked_lm_loss(logits_BTV, batch["labels"]), {"masked_accuracy": correct / count.clamp(min=1)}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]:
        """Masked-token loss and accuracy on consecutive windows, with fixed masks (seed 0)."""
        was_training = model.training
        model.eval()
        num_windows = (len(tokens) - 1) // seq_len
        nats, correct, count = 0.0, 0, 0
        for first in range(0, num_windows, batch_size):
            offsets = np.arange(first, min(first + batch_size, num_windows), dtype=np.int64) * seq_len
            batch = move_batch(self.batch(tokens, offsets, seq_len, seed=first), device)
            with autocast_context(device, precision):
                logits_BTV = model(batch["inputs"])
            hits, labelled = masked_token_accuracy(logits_BTV, batch["labels"])
            nats += float(masked_lm_loss(logits_BTV, batch["labels"])) * int(labelled)
            correct, count = correct + int(hits), count + int(labelled)
        model.train(was_training)
        return {"val_loss": nats / max(count, 1), "val_masked_accuracy": correct / max(count, 1)}

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        result = self.evaluate(model, shard.tokens, seq_len, batch_size, device, precision)
        return {**result, "val_tokens": int(shard.num_tokens)}


def task_for(model_cfg: ModelConfig, tokenizer: Any) -> Task:
    """The pretraining task of a model family: causal LM for decoders, masked LM for BERT."""
    if model_cfg.family in ("gpt2", "llama", "mistral", "falcon"):
        return CausalLMTask()
    if model_cfg.family == "bert":
        return MaskedLMTask(tokenizer)
    raise ConfigError(f"model.family {model_cfg.family!r} has no pretraining task yet: use a decoder family "
                      "or bert")


def move_batch(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


__all__ = ["Batch", "CausalLMTask", "MaskedLMTask", "Task", "move_batch", "task_for"]
