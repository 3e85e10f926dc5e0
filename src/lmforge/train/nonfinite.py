"""Noticing a non-finite loss or gradient norm at the step it happens.

A diverged run (learning rate far too high, an fp16 overflow the scaler cannot absorb, a bad
batch) shows as a NaN or infinite loss or gradient norm. Left alone, the optimiser writes NaN
into every weight and every later checkpoint is useless. `NonFiniteGuard` watches each
step's loss and global gradient norm; the loop then applies `train.on_nonfinite`:

- ``stop`` (default): end the run with one error line; the newest checkpoint stays the last
  finite one (nothing non-finite is ever saved: `checkpoint.save_checkpoint` refuses it);
- ``skip``: drop that step's update (the optimiser does not step; the batch is consumed) and
  count it as ``skipped_steps``;
- ``rollback``: reload the newest checkpoint and go on with the learning rate scaled by
  ``train.rollback_lr_factor``, at most ``train.max_rollbacks`` times.

Reading a flag from the device is a host sync. On CPU that costs nothing, so every step is
checked at once, before the optimiser steps. On an accelerator the guard (for stop and
rollback) keeps the first bad step's number and values on the device and is read at the
logging cadence, before every save and at the end, so the steps between are not synced;
the report still names the step where it happened. ``skip`` has to decide before each update
and reads the flag every step on any device.

With fp16 the grad scaler already skips steps whose gradients overflow and lowers its scale;
there an infinite gradient norm is the scaler's business and only the loss is watched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class NonFinite:
    """The first step (1-based, as logged) whose loss or gradient norm was not finite."""

    step: int
    loss: float
    grad_norm: float

    def describe(self) -> str:
        return f"step {self.step} (loss {self.loss}, gradient norm {self.grad_norm})"


class NonFiniteGuard:
    def __init__(self, every_step: bool, watch_gradients: bool = True) -> None:
        self.every_step = every_step
        self.watch_gradients = watch_gradients
        self._first: Optional[torch.Tensor] = None  # [step, loss, grad_norm] on the device; step -1 = none

    def observe(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> Optional[NonFinite]:
        """Record a step. In every-step mode returns the event at once when the step is bad;
        otherwise remembers the first bad step on the device and returns None (see `pending`)."""
        loss = loss.detach().float()
        grad_norm = grad_norm.detach().float()
        finite = torch.isfinite(loss)
        if self.watch_gradients:
            finite = finite & torch.isfinite(grad_norm)
        if self.every_step:
            if bool(finite):
                return None
            return NonFinite(step, float(loss), float(grad_norm))
        values = torch.stack([torch.tensor(float(step), device=loss.device), loss, grad_norm])
        if self._first is None:
            self._first = torch.tensor([-1.0, 0.0, 0.0], device=loss.device)
        take = (~finite) & (self._first[0] < 0)  # only the first bad step is kept
        self._first = torch.where(take, values, self._first)
        return None

    def pending(self) -> Optional[NonFinite]:
        """The first bad step seen since the last call (a host sync), or None; then forgets it."""
        if self._first is None:
            return None
        step, loss, grad_norm = (float(x) for x in self._first.tolist())
        self._first = None
        if step < 0:
            return None
        return NonFinite(int(step), loss, grad_norm)


def first_nonfinite_tensor(named_tensors) -> Optional[str]:
    """The name of the first floating-point tensor holding a NaN or infinity, or None."""
    for name, tensor in named_tensors:
        if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()):
            return name
    return None

