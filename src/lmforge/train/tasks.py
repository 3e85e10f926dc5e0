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
from lmforge.evaluate import autocast_context, loss_on_stream
from lmforge.objectives import causal_lm_loss

Batch = dict[str, torch.Tensor]


class Task(Protocol):
    name: str

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int) -> Batch: ...

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]: ...


class CausalLMTask:
    """Next-token prediction: inputs ``w[:-1]``, targets ``w[1:]`` of each window of seq_len+1 tokens."""

    name = "causal_lm"

    def batch(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int) -> Batch:
        from lmforge.data import get_batch

        inputs_BT, targets_BT = get_batch(tokens, offsets, seq_len)
        return {"inputs": inputs_BT, "targets": targets_BT}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return causal_lm_loss(model(batch["inputs"]), batch["targets"]), {}

    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]:
        nats, count = loss_on_stream(model, tokens, seq_len, batch_size, device, precision)
        return {"val_loss": nats / max(count, 1)}


def task_for(model_cfg: ModelConfig) -> Task:
    """The pretraining task of a model family (decoder-only families: causal LM)."""
    if model_cfg.family in ("gpt2", "llama", "mistral", "falcon"):
        return CausalLMTask()
    raise ConfigError(f"model.family {model_cfg.family!r} has no pretraining task yet: use a decoder family")


def move_batch(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


__all__ = ["Batch", "CausalLMTask", "Task", "autocast_context", "move_batch", "task_for"]
