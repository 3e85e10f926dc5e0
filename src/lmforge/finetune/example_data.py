"""Encoded fine-tuning examples as the training loop's `TaskData`: per-epoch shuffles, the
global batch sliced per process, exact resume, and evaluation over fixed val examples.

Each optimiser step draws a *global* batch of ``batch_size x grad_accum x world_size``
examples (rows) from a permutation of the train rows fixed by ``(train.seed, epoch)``; a step
that reaches the end of an epoch goes on into the next epoch's permutation, so every step has
a full batch. Every process takes its own slices exactly as `ShardData` does (micro-batch
``m`` of rank ``r`` is slot ``(m * world_size + r) * batch_size``), so one process with
``grad_accum = k`` and k processes with ``grad_accum = 1`` see the same examples. The whole
state is ``{epoch, position, seed}`` (plus the number of train rows, checked on resume): a
resumed run draws exactly the batches the uninterrupted one would.

The task turns rows into tensors (``collate``) and measures itself on a batch
(``measure``: sums, and lists such as predictions, that add up over batches; ``summarize``:
the ``val_*`` figures from them), so evaluation is token- or example-weighted over all the
examples evaluated, never a mean of batch means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from lmforge.errors import CheckpointError
from lmforge.finetune.examples import Skips
from lmforge.train.precision import autocast_context
from lmforge.train.tasks.registry import Batch, move_batch

if TYPE_CHECKING:
    from lmforge.config import TrainConfig
    from lmforge.train.parallel import World

Row = dict[str, Any]  # one encoded example (or packed row): lists of ids, labels, ...


class ExampleTask(Protocol):
    def collate(self, rows: list[Row]) -> Batch: ...

    def measure(self, model: torch.nn.Module, batch: Batch) -> dict[str, Any]: ...

    def summarize(self, sums: dict[str, Any]) -> dict[str, float]: ...


def row_tokens(row: Row) -> int:
    """Non-pad tokens a row feeds the model (``num_tokens``, set by the task: its inputs, and
    a seq2seq row's decoder inputs too)."""
    return int(row["num_tokens"])


class ExampleData:
    """Train and val rows of one example task (the loop's `TaskData`).

    ``tokens_per_step`` is an estimate: the mean non-pad tokens of a train row (inputs, plus
    the targets a seq2seq decoder reads) times the examples of one global batch, so budgets
    (``train.max_tokens``) and tokens/s count real tokens rather than padding.
    """

    def __init__(self, task: ExampleTask, train_rows: list[Row], val_rows: list[Row], train: "TrainConfig",
                 world: "World", skips: dict[str, Skips], notes: list[str] | None = None) -> None:
        self.task, self.train_rows, self.val_rows = task, train_rows, val_rows
        self.train_cfg, self.world, self.skips = train, world, skips
        self.notes = notes or []
        self.global_batch = train.batch_size * train.grad_accum * world.world_size
        mean_tokens = sum(map(row_tokens, train_rows)) / max(len(train_rows), 1)
        self.tokens_per_step = max(1, round(mean_tokens * self.global_batch))
        self.seed, self.epoch, self.position = train.seed, 0, 0
        self._order_epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of the train rows for ``epoch``: a function of (seed, epoch) alone."""
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_rows))
            self._order_epoch = epoch
        return self._order

    def next_indices(self) -> list[int]:
        """The row indices of the next global batch, advancing the state."""
        picked: list[int] = []
        while len(picked) < self.global_batch:
            take = self.order(self.epoch)[self.position:self.position + self.global_batch - len(picked)]
            picked.extend(int(i) for i in take)
            self.position += len(take)
            if self.position >= len(self.train_rows):
                self.epoch, self.position = self.epoch + 1, 0
        return picked

    def next_step(self) -> list[Batch]:
        t = self.train_cfg
        picked = self.next_indices()
        batches = []
        for micro in range(t.grad_accum):
            chunk = (micro * self.world.world_size + self.world.rank) * t.batch_size
            batches.append(self.task.collate([self.train_rows[i] for i in picked[chunk:chunk + t.batch_size]]))
        return batches

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "num_examples": len(self.train_rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("num_examples", len(self.train_rows))
        if saved != len(self.train_rows):
            raise CheckpointError(f"the checkpoint was trained on {saved:,} train examples, the train file now "
                                  f"gives {len(self.train_rows):,}: resume with the same data and options, or "
                                  "start a new --train.run_dir")
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])
        self._order_epoch = -1

    @torch.no_grad()
    def measure_rows(self, model: torch.nn.Module, rows: list[Row], device: torch.device,
                     precision: str) -> dict[str, float]:
        """The task's val figures over ``rows``, in batches of ``train.batch_size``."""
        was_training = model.training
        model.eval()
        sums: dict[str, Any] = {}
        for first in range(0, len(rows), self.train_cfg.batch_size):
            batch = move_batch(self.task.collate(rows[first:first + self.train_cfg.batch_size]), device)
            with autocast_context(device, precision):
                measured = self.task.measure(model, batch)
            for key, value in measured.items():
                sums[key] = sums[key] + value if key in sums else value
        model.train(was_training)
        return self.task.summarize(sums)

    def evaluate(self, model: torch.nn.Module, device: torch.device, precision: str) -> dict[str, float]:
        """The val figures on the first ``eval_batches x batch_size`` val examples (the same ones
        every time)."""
        t = self.train_cfg
        return self.measure_rows(model, self.val_rows[:t.eval_batches * t.batch_size], device, precision)

    def final_evaluation(self, model: torch.nn.Module, device: torch.device, precision: str) -> dict[str, float]:
        return {**self.measure_rows(model, self.val_rows, device, precision), "val_examples": len(self.val_rows)}

    def describe(self) -> str:
        train_tokens = sum(map(row_tokens, self.train_rows))
        parts = [f"train {len(self.train_rows):,} rows ({train_tokens:,} tokens), val {len(self.val_rows):,} rows"]
        parts += self.notes
        parts += [f"{split} {skips.describe()}" for split, skips in self.skips.items() if skips.total]
        return "; ".join(parts)
