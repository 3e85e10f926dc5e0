"""BERT's masked language modelling (Devlin et al. 2019) on token shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmforge.config import open_unit, option
from lmforge.objectives import masked_lm_loss, masked_token_accuracy
from lmforge.train.precision import autocast_context
from lmforge.train.tasks.registry import Batch, TaskContext, move_batch, register_task
from lmforge.train.tasks.shard_data import ShardTask


@dataclass
class MaskedLMOptions:
    mask_prob: float = option(0.15, "share of tokens selected for prediction (of which 80% become [MASK], "
                                    "10% a random token, 10% stay)", check=open_unit)


@register_task("masked_lm", MaskedLMOptions, "BERT's masked-token prediction with dynamic masks on token shards; "
                                             "val masked-token loss and accuracy")
class MaskedLMTask(ShardTask):
    """BERT's masked-LM objective on windows of ``seq_len`` tokens.

    Masking is dynamic (RoBERTa, Liu et al. 2019): each draw of a window gets fresh masks, from
    a generator seeded per micro-batch, so runs stay reproducible and resumable. Windows are
    packed across document boundaries (RoBERTa's FULL-SENTENCES), the eos token separating them.
    """

    head = "masked_lm"

    def __init__(self, tokenizer: Any, mask_prob: float = 0.15) -> None:
        self.tokenizer = tokenizer
        self.mask_id, self.pad_id = tokenizer.require_id("mask", "task masked_lm"), tokenizer.pad_id
        self.vocab_size = tokenizer.vocab_size
        # every special/control id (an imported tokenizer's [CLS], <|eot_id|>... too) is never masked
        self.special_ids = sorted(tokenizer.special_ids | {tokenizer.pad_id})
        self.mask_prob = mask_prob

    @classmethod
    def build(cls, options: MaskedLMOptions, context: TaskContext) -> "MaskedLMTask":
        return cls(context.tokenizer, options.mask_prob)

    def batch(self, tokens: np.ndarray, offsets_B: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch
        from lmforge.masking import mask_tokens

        windows_BT, _ = get_batch(tokens, offsets_B, seq_len)
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
            offsets_B = np.arange(first, min(first + batch_size, num_windows), dtype=np.int64) * seq_len
            batch = move_batch(self.batch(tokens, offsets_B, seq_len, seed=first), device)
            with autocast_context(device, precision):
                logits_BTV = model(batch["inputs"])
            hits, labelled = masked_token_accuracy(logits_BTV, batch["labels"])
            nats += float(masked_lm_loss(logits_BTV, batch["labels"])) * int(labelled)
            correct, count = correct + int(hits), count + int(labelled)
        model.train(was_training)
        return {"val_loss": nats / max(count, 1), "val_masked_accuracy": correct / max(count, 1)}
