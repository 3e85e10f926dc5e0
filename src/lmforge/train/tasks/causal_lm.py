"""Causal language modelling: predict each next token (GPT-2, LLaMA, Mistral, Falcon pretraining)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmforge.config import option
from lmforge.objectives import causal_lm_loss
from lmforge.train.next_token_eval import evaluate_shard, loss_on_stream, summarize
from lmforge.train.tasks.registry import Batch, TaskContext, register_task
from lmforge.train.tasks.shard_data import ShardTask


@dataclass
class CausalLMOptions:
    fused_loss: bool = option(True, "compute the output head and the loss in row chunks of at most 2^26 logits "
                                    "(same loss and gradients; less memory once B*T*V exceeds one chunk)")


@register_task("causal_lm", CausalLMOptions, "next-token prediction on token shards; val loss, perplexity, "
                                             "bits per byte")
class CausalLMTask(ShardTask):
    """Next-token prediction: inputs ``w[:-1]``, targets ``w[1:]`` of each window of seq_len+1 tokens."""

    head = "causal_lm"

    def __init__(self, fused_loss: bool = True, tokenizer: Any = None) -> None:
        # True: the model's head computes head + loss in row chunks (`linear_cross_entropy`);
        # False: full logits, then `causal_lm_loss`. Same value and gradients, less memory.
        self.fused_loss = fused_loss
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, options: CausalLMOptions, context: TaskContext) -> "CausalLMTask":
        return cls(options.fused_loss, context.tokenizer)

    def batch(self, tokens: np.ndarray, offsets_B: np.ndarray, seq_len: int, seed: int) -> Batch:
        from lmforge.data import get_batch

        inputs_BT, targets_BT = get_batch(tokens, offsets_B, seq_len)
        return {"inputs": inputs_BT, "targets": targets_BT}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.fused_loss:
            return model(batch["inputs"], targets_BT=batch["targets"]), {}
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

    def report(self, model: torch.nn.Module, tokens: np.ndarray, num_bytes: int, seq_len: int, batch_size: int,
               device: torch.device, precision: str) -> dict[str, float]:
        """Loss, perplexity and bits per byte (`next_token_eval`)."""
        nats, count = loss_on_stream(model, tokens, seq_len, batch_size, device, precision)
        return summarize(nats, count, num_bytes)
