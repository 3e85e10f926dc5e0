"""One optimiser step: micro-batches forward and backward, clip, non-finite guard, update.

`optimizer_step` is the whole step of every training loop in lmforge; recipes that need
another loop around it (rollouts, adversarial inner steps, a teacher's targets in the batch)
call it with their own batches.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

from lmforge.train.nonfinite import NonFinite, NonFiniteGuard
from lmforge.train.precision import autocast_context
from lmforge.train.setup import Training
from lmforge.train.tasks import Batch, move_batch


@dataclass
class StepResult:
    loss: torch.Tensor  # this process's loss, the mean over its micro-batches (on the device)
    grad_norm: torch.Tensor  # global gradient norm before clipping
    metrics: dict[str, torch.Tensor]  # the task's own, averaged over the micro-batches
    nonfinite: Optional[NonFinite]  # a bad loss or gradient norm the guard found at once
    updated: bool  # whether the optimiser stepped


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Each group trains at ``lr`` times its ``lr_scale`` (layer-wise decay, per-module rates)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


def accumulate_gradients(training: Training, batches: list[Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward over the micro-batches; gradients add up to those of their mean loss."""
    device, precision = training.device, training.cfg.train.precision
    loss_sum = torch.zeros((), device=device)
    metric_sums: dict[str, torch.Tensor] = {}
    for micro, cpu_batch in enumerate(batches):
        batch = move_batch(cpu_batch, device)
        # DDP all-reduces gradients only on the last micro-batch of the step
        sync = micro == len(batches) - 1 or not training.world.distributed
        with training.train_model.no_sync() if not sync else contextlib.nullcontext():
            with autocast_context(device, precision):
                loss, task_metrics = training.task.loss(training.train_model, batch)
                loss = loss / len(batches)
            training.scaler.scale(loss).backward()
        loss_sum += loss.detach()
        for key, value in task_metrics.items():
            metric_sums[key] = metric_sums.get(key, 0) + value.detach() / len(batches)
    return loss_sum, metric_sums


def optimizer_step(training: Training, batches: list[Batch], guard: NonFiniteGuard, step_number: int,
                   skip_nonfinite: bool = False) -> StepResult:
    """Train on ``batches`` (this process's micro-batches) and update the weights at the learning
    rates already set. ``step_number`` (1-based) is what the guard reports. A non-finite value
    found at once drops the update: with ``skip_nonfinite`` the step counts as done, otherwise
    the caller decides (stop, roll back) and the grad scaler is left as it was."""
    optimizer, scaler = training.optimizer, training.scaler
    loss, metrics = accumulate_gradients(training, batches)
    scaler.unscale_(optimizer)
    clip = training.cfg.optim.grad_clip
    grad_norm = torch.nn.utils.clip_grad_norm_(training.model.parameters(), clip if clip > 0 else float("inf"))
    bad = guard.observe(step_number, loss, grad_norm)  # None unless checked at once and bad
    if bad is not None and not skip_nonfinite:
        optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, grad_norm, metrics, bad, updated=False)
    if bad is None:
        scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss, grad_norm, metrics, bad, updated=bad is None)
