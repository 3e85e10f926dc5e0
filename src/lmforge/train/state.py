"""What a checkpoint's ``trainer_state.pt`` holds, and restoring a run from it (resume, rollback).

The whole state of a run besides its weights: optimiser and grad-scaler state, the task data's
position (saved under ``sampler``: for token shards the sampler's ``(seed, position)``), the RNG,
and the counters of `RunState`. Loaded with ``weights_only=True`` (`checkpoint.load_trainer_state`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmforge.errors import CheckpointError
from lmforge.train import checkpoint as ckpt
from lmforge.train.setup import Training


@dataclass
class RunState:
    """The counters of a run. ``lr_scale`` is 1, times ``train.rollback_lr_factor`` per rollback;
    ``horizon`` is the number of steps the learning-rate schedule spans."""

    step: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    horizon: int = 0
    lr_scale: float = 1.0
    rollbacks: int = 0
    skipped_steps: int = 0


def trainer_state(training: Training, run: RunState) -> dict[str, Any]:
    """The state a checkpoint saves besides the weights."""
    state = {
        "optimizer": training.optimizer.state_dict(), "scaler": training.scaler.state_dict(),
        "sampler": training.data.state_dict(), "rng_cpu": torch.get_rng_state(), **dataclasses.asdict(run),
    }
    if training.device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(training.device)
    return state


def restore(training: Training, ckpt_dir: Path, horizon: int) -> RunState:
    """Weights, optimiser, scaler, data position and RNG from ``ckpt_dir``; returns its counters
    (``horizon`` for checkpoints that predate saving it)."""
    changes = ckpt.model_config_changes(ckpt.read_model_config(ckpt_dir), training.model_cfg)
    if changes:
        raise CheckpointError(f"{ckpt_dir} was trained with another model config ({'; '.join(changes)}): "
                              "pass the same model options, a new --train.run_dir, or --train.resume false")
    if training.adapter is not None:
        ckpt.load_adapter_weights(training.model, ckpt_dir)  # the base came from train.init_from
    else:
        ckpt.load_weights(training.model, ckpt_dir)
    state = ckpt.load_trainer_state(ckpt_dir)
    optimizer = training.optimizer
    lr_scales = [group["lr_scale"] for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
        training.scaler.load_state_dict(state["scaler"])
        training.data.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng_cpu"])
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has a {ckpt.STATE_FILE} that does not fit this run "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}): "
                              "delete that checkpoint, or pass --train.resume false") from None
    for group, scale in zip(optimizer.param_groups, lr_scales):
        group["lr_scale"] = scale  # the run's own (a checkpoint from before lr_scale has none)
    if training.device.type == "cuda" and "rng_cuda" in state:
        torch.cuda.set_rng_state(state["rng_cuda"], training.device)
    return RunState(step=state["step"], tokens_seen=state["tokens_seen"], train_seconds=state["train_seconds"],
                    horizon=state.get("horizon", horizon), lr_scale=state.get("lr_scale", 1.0),
                    rollbacks=state.get("rollbacks", 0), skipped_steps=state.get("skipped_steps", 0))
