"""Checkpoints: one directory per save, written atomically, the newest N kept.

Layout of ``RUN_DIR/checkpoints/step_00001000/`` (docs/architecture.md, 'Checkpoints'):

- ``model.safetensors``  weights (tied tensors stored once)
- ``config.json``        the resolved lmforge ``ModelConfig`` plus step and format tag
- ``tokenizer/``         a copy of the tokenizer the model was trained with
- ``trainer_state.pt``   optimiser, grad scaler, RNG and sampler state, step counters;
                         only tensors and plain containers, loaded with ``weights_only=True``

The directory is assembled under a temporary name and renamed into place, so a crash
mid-save never leaves something that looks like a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_model, save_model

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError

FORMAT = "lmforge-checkpoint-v1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.pt"
TOKENIZER_DIR = "tokenizer"
REQUIRED = (MODEL_FILE, CONFIG_FILE, TOKENIZER_DIR)


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _step_dirs(run_dir: str | Path) -> list[Path]:
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))


def missing_files(ckpt_dir: Path) -> list[str]:
    return [name for name in REQUIRED if not (ckpt_dir / name).exists()]


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The newest complete checkpoint under ``run_dir/checkpoints`` (None if there is none)."""
    complete = [p for p in _step_dirs(run_dir) if not missing_files(p) and (p / STATE_FILE).exists()]
    return complete[-1] if complete else None


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint directory or a run directory (take its newest checkpoint)."""
    path = Path(path)
    if not str(path) or not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist: pass a checkpoint directory "
                              "or a run directory from `lmforge pretrain`")
    if (path / CONFIG_FILE).exists() or (path / MODEL_FILE).exists():
        missing = missing_files(path)
        if missing:
            raise CheckpointError(f"checkpoint '{path}' is incomplete (missing {', '.join(missing)}): "
                                  "use another checkpoint or retrain")
        return path
    newest = latest_checkpoint(path)
    if newest is None:
        raise CheckpointError(f"'{path}' holds no complete checkpoint: pass a directory with "
                              f"{', '.join(REQUIRED)} or a run directory with checkpoints/step_*")
    return newest


def write_model_files(directory: Path, model: torch.nn.Module, model_cfg: ModelConfig, step: int,
                      extra_config: Optional[dict[str, Any]] = None) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (which must exist).
    Shared by ``save_checkpoint`` and HF import (``lmforge.interop.convert``)."""
    save_model(model, str(directory / MODEL_FILE))
    config = {"format": FORMAT, "step": step, "model": dataclasses.asdict(model_cfg), **(extra_config or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, model_cfg: ModelConfig,
                    tokenizer_dir: str | Path, trainer_state: dict[str, Any], keep_last: int = 2,
                    extra_config: Optional[dict[str, Any]] = None) -> Path:
    """Write ``run_dir/checkpoints/step_{step:08d}`` atomically and prune to ``keep_last``."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        write_model_files(tmp, model, model_cfg, step, extra_config)
        shutil.copytree(tokenizer_dir, tmp / TOKENIZER_DIR)
        torch.save(trainer_state, tmp / STATE_FILE)
        if final.exists():  # re-saving the same step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _step_dirs(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_model_config(ckpt_dir: Path) -> ModelConfig:
    try:
        config = json.loads((ckpt_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        return ModelConfig(**config["model"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {CONFIG_FILE} ({err}): "
                              "use another checkpoint or retrain") from None


def load_weights(model: torch.nn.Module, ckpt_dir: Path) -> None:
    try:
        missing, unexpected = load_model(model, str(ckpt_dir / MODEL_FILE), strict=False)
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {MODEL_FILE} "
                              f"({type(err).__name__}: {err}): use another checkpoint") from None
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' does not match its config "
                              f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def load_trainer_state(ckpt_dir: Path) -> dict[str, Any]:
    try:
        return torch.load(ckpt_dir / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {STATE_FILE} ({err}): "
                              "delete that checkpoint to resume from an earlier one") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Load ``(model, tokenizer, ckpt_dir)`` from a checkpoint or run directory, in eval mode."""
    from lmforge.models import build_model
    from lmforge.tokenize import load_tokenizer

    ckpt_dir = resolve_checkpoint(path)
    model = build_model(read_model_config(ckpt_dir))
    load_weights(model, ckpt_dir)
    tokenizer = load_tokenizer(ckpt_dir / TOKENIZER_DIR)
    return model.to(device).eval(), tokenizer, ckpt_dir
