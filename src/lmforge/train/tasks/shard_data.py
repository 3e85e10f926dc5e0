"""Token shards as a task's data: what causal LM, masked LM and span corruption read.

The train split is cut into windows drawn by a `WindowSampler` whose whole state is
``(seed, position)``. The sampler draws the *global* batch of each optimiser step and every
process takes its own slices, so one process with ``grad_accum = k`` and k processes with
``grad_accum = 1`` see the same sequences and compute the same update. Randomness inside a
batch (masks, spans) comes from a seed fixed by (run seed, step, slot in the global batch):
the same after a resume and for any split of the batch over processes.

Legend: B = batch (windows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lmforge.train.tasks.registry import Batch

if TYPE_CHECKING:
    from lmforge.config import ModelConfig, TrainConfig
    from lmforge.train.parallel import World


class ShardTask:
    """Base of the tasks that train on token shards. A subclass says how many raw tokens one
    example reads (`window_len`), turns windows into a batch (`batch`) and measures itself on
    val tokens (`evaluate`, `final_evaluation`); this class opens the data."""

    extra_vocab = 0
    tokenizer: Any = None  # set by `build`; only opening data needs it

    def window_len(self, seq_len: int) -> int:
        """Raw tokens one example reads (the sampler's stride): ``seq_len`` for (masked) LM."""
        return seq_len

    def flops_per_token(self, model_cfg: "ModelConfig", seq_len: int) -> float:
        """6N + 12·L·H·K·T per token (`models.flops_per_token`): one example reads ``seq_len``
        tokens and trains on all of them (span corruption counts its own lengths)."""
        from lmforge.models import flops_per_token

        return flops_per_token(model_cfg, seq_len)

    def batch(self, tokens: np.ndarray, offsets_B: np.ndarray, seq_len: int, seed: int) -> Batch:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch_size: int,
                 device: torch.device, precision: str) -> dict[str, float]:
        raise NotImplementedError

    def final_evaluation(self, model: torch.nn.Module, shard: Any, seq_len: int, batch_size: int,
                         device: torch.device, precision: str) -> dict[str, float]:
        """`evaluate` over the whole val split, and its size."""
        return {**self.evaluate(model, shard.tokens, seq_len, batch_size, device, precision),
                "val_tokens": int(shard.num_tokens)}

    def report(self, model: torch.nn.Module, tokens: np.ndarray, num_bytes: int, seq_len: int, batch_size: int,
               device: torch.device, precision: str) -> dict[str, float]:
        """`evaluate`'s figures keyed by the task (``masked_lm_loss``, ...): tasks without a
        next-token likelihood have no bits per byte."""
        metrics = self.evaluate(model, tokens, seq_len, batch_size, device, precision)
        return {**{f"{self.name}_{key.removeprefix('val_')}": value for key, value in metrics.items()},
                "tokens": len(tokens)}

    def open_data(self, train: "TrainConfig", world: "World") -> "ShardData":
        return ShardData(self, train, world)


class ShardData:
    """The train and val splits of ``train.shards_dir`` for one `ShardTask` (the loop's `TaskData`)."""

    def __init__(self, task: ShardTask, train: "TrainConfig", world: "World") -> None:
        from lmforge.data import TokenShard, WindowSampler, check_tokenizer_matches

        check_tokenizer_matches(train.shards_dir, task.tokenizer)
        self.task, self.train_cfg, self.world = task, train, world
        self.train, self.val = TokenShard(train.shards_dir, "train"), TokenShard(train.shards_dir, "val")
        self.global_batch = train.batch_size * train.grad_accum * world.world_size
        self.window_len = task.window_len(train.seq_len)  # more than seq_len for span corruption
        self.tokens_per_step = self.global_batch * self.window_len
        self.sampler = WindowSampler(self.train.num_tokens, self.window_len, self.global_batch, train.seed)

    def next_step(self) -> list[Batch]:
        t = self.train_cfg
        step = self.sampler.position // self.global_batch  # optimiser steps drawn so far
        offsets = self.sampler.next_offsets()
        batches = []
        for micro in range(t.grad_accum):
            chunk = (micro * self.world.world_size + self.world.rank) * t.batch_size
            # the seed names (run, step, slot in the global batch): the same masks after a resume
            # and whatever the number of processes
            seed = (t.seed * 1_000_003 + step) * 1_000_003 + chunk
            batches.append(self.task.batch(self.train.tokens, offsets[chunk:chunk + t.batch_size], t.seq_len, seed))
        return batches

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)

    def evaluate(self, model: torch.nn.Module, device: torch.device, precision: str) -> dict[str, float]:
        """The task's val metrics on a fixed prefix of the val split (the same windows every time)."""
        t = self.train_cfg
        num_tokens = min(self.val.num_tokens, t.eval_batches * t.batch_size * t.seq_len + 1)
        return self.task.evaluate(model, self.val.tokens[:num_tokens], t.seq_len, t.batch_size, device, precision)

    def final_evaluation(self, model: torch.nn.Module, device: torch.device, precision: str) -> dict[str, float]:
        t = self.train_cfg
        return self.task.final_evaluation(model, self.val, t.seq_len, t.batch_size, device, precision)

    def describe(self) -> str:
        return f"train split {self.train.num_tokens:,} tokens"
