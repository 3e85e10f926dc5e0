"""Checkpoints: one directory per save, written atomically, the newest N kept.

Layout of ``RUN_DIR/checkpoints/step_00001000/`` (docs/architecture.md, 'Checkpoints'):

- ``model.safetensors``  weights (tied tensors stored once)
- ``config.json``        the resolved lmforge ``ModelConfig`` plus step and format tag
- ``tokenizer/``         a copy of the tokenizer the model was trained with
- ``trainer_state.pt``   optimiser, grad scaler, RNG and sampler state, step counters;
                         only tensors and plain containers, loaded with ``weights_only=True``

The directory is assembled under a temporary name (``.tmp-step_*``) and renamed into place,
so a crash mid-save never leaves something that looks like a checkpoint; the next training
run in the directory removes such leftovers (``remove_partial_saves``). A write that fails
(disk full, read-only, quota) is one ``CheckpointError`` line naming the file and the reason,
and the earlier checkpoints stay as they were. Weights or optimiser state holding a NaN or an
infinity are never written, and a checkpoint holding them is refused on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors.torch import load_model, save_model

from lmforge.config import ModelConfig, build_config
from lmforge.errors import CheckpointError, LmforgeError
from lmforge.train.nonfinite import first_nonfinite_tensor

FORMAT = "lmforge-checkpoint-v1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.pt"
TOKENIZER_DIR = "tokenizer"
REQUIRED = (MODEL_FILE, CONFIG_FILE, TOKENIZER_DIR)
PARTIAL_PREFIX = ".tmp-"  # a save in progress, or one a crash interrupted
# what a resume needs from trainer_state.pt, and the type each must have
STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "optimizer": dict, "scaler": dict, "sampler": dict, "rng_cpu": torch.Tensor,
    "step": int, "tokens_seen": int, "train_seconds": (int, float),
}


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


def _write(what: Path, write: Callable[[], Any], shown: Optional[Path] = None) -> None:
    """Run one write; any failure becomes one line naming the file and the reason.

    torch and safetensors report a full disk in their own words (torch's "enforce fail ...
    unexpected pos" when given a path, safetensors' "I/O error: No space left on device"), so
    the reason is the OSError's text where there is one, else the first line of the error, with
    "the disk is full" when that disk has less than 64 MiB left. ``shown`` is the path named
    (a file's final place rather than the temporary directory it is written in).
    """
    try:
        write()
    except LmforgeError:
        raise
    except Exception as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        try:
            free = shutil.disk_usage(what.parent).free
            if free < 64 << 20:
                reason += f" (the disk is full: {free:,} bytes free)"
        except OSError:
            pass
        raise CheckpointError(f"could not write {shown or what}: {reason}: free space or fix permissions there, or pass "
                              "another directory; earlier checkpoints are unchanged") from None


def _save_torch(obj: Any, path: Path) -> None:
    # Given a file object, torch.save reports a full disk as an OSError (errno ENOSPC).
    with open(path, "wb") as file:
        torch.save(obj, file)


def write_model_files(directory: Path, model: torch.nn.Module, model_cfg: ModelConfig, step: int,
                      extra_config: Optional[dict[str, Any]] = None, shown_dir: Optional[Path] = None) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (which must exist;
    errors name ``shown_dir`` instead, the place the files are bound for).
    Shared by ``save_checkpoint`` and HF import (``lmforge.interop.convert``)."""
    shown_dir = shown_dir or directory
    bad = first_nonfinite_tensor(model.state_dict().items())
    if bad is not None:
        raise CheckpointError(f"refusing to write {shown_dir}: weight '{bad}' holds a NaN or an infinity "
                              "(training diverged; see --train.on_nonfinite)")
    _write(directory / MODEL_FILE, lambda: save_model(model, str(directory / MODEL_FILE)), shown_dir / MODEL_FILE)
    config = {"format": FORMAT, "step": step, "model": dataclasses.asdict(model_cfg), **(extra_config or {})}
    _write(directory / CONFIG_FILE,
           lambda: (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8"),
           shown_dir / CONFIG_FILE)


def _state_tensors(state: Any, prefix: str = ""):
    """(name, tensor) for every tensor in a nested trainer state."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from _state_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from _state_tensors(value, f"{prefix}[{index}]")


def remove_partial_saves(run_dir: str | Path) -> int:
    """Delete the temporary directories of saves that never finished (the caller holds the run
    lock, so no save is in progress); returns how many there were."""
    root = checkpoints_dir(run_dir)
    partial = [p for p in root.iterdir() if p.name.startswith(PARTIAL_PREFIX)] if root.is_dir() else []
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    return len(partial)


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, model_cfg: ModelConfig,
                    tokenizer_dir: str | Path, trainer_state: dict[str, Any], keep_last: int = 2,
                    extra_config: Optional[dict[str, Any]] = None) -> Path:
    """Write ``run_dir/checkpoints/step_{step:08d}`` atomically and prune to ``keep_last``."""
    root = checkpoints_dir(run_dir)
    _write(root, lambda: root.mkdir(parents=True, exist_ok=True))
    bad = first_nonfinite_tensor(_state_tensors(trainer_state.get("optimizer", {})))
    if bad is not None:
        raise CheckpointError(f"refusing to write step {step}: optimiser state '{bad}' holds a NaN or an "
                              "infinity (training diverged; see --train.on_nonfinite)")
    final = root / f"step_{step:08d}"
    tmp = root / f"{PARTIAL_PREFIX}{final.name}-{os.getpid()}-{time.time_ns()}"
    _write(tmp, tmp.mkdir, final)
    try:
        write_model_files(tmp, model, model_cfg, step, extra_config, shown_dir=final)
        _write(tmp / TOKENIZER_DIR, lambda: shutil.copytree(tokenizer_dir, tmp / TOKENIZER_DIR), final / TOKENIZER_DIR)
        _write(tmp / STATE_FILE, lambda: _save_torch(trainer_state, tmp / STATE_FILE), final / STATE_FILE)
        if final.exists():  # re-saving the same step (e.g. after a rollback): move the old one aside first
            old = root / f"{PARTIAL_PREFIX}old-{final.name}-{os.getpid()}-{time.time_ns()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _step_dirs(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_model_config(ckpt_dir: Path) -> ModelConfig:
    """The checkpoint's model config, type- and range-checked like a recipe."""
    try:
        config = json.loads((ckpt_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        model = config["model"]
        if not isinstance(model, dict):
            raise TypeError(f"'model' is {type(model).__name__}, not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {CONFIG_FILE} ({err}): "
                              "use another checkpoint or retrain") from None
    try:
        return build_config(ModelConfig, model)
    except LmforgeError as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has a wrong {CONFIG_FILE}: {err}; "
                              "use another checkpoint or retrain") from None


def model_config_changes(saved: ModelConfig, wanted: ModelConfig) -> list[str]:
    """``model.KEY saved -> wanted`` for every field that differs."""
    old, new = dataclasses.asdict(saved), dataclasses.asdict(wanted)
    return [f"model.{key} {old[key]!r} -> {new[key]!r}" for key in old if old[key] != new[key]]


def load_weights(model: torch.nn.Module, ckpt_dir: Path) -> None:
    try:
        missing, unexpected = load_model(model, str(ckpt_dir / MODEL_FILE), strict=False)
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {MODEL_FILE} "
                              f"({type(err).__name__}: {err}): use another checkpoint") from None
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' does not match its config "
                              f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    bad = first_nonfinite_tensor(model.state_dict().items())
    if bad is not None:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has non-finite weights ('{bad}' holds a NaN or an "
                              "infinity; its training diverged): use an earlier checkpoint")


def load_trainer_state(ckpt_dir: Path) -> dict[str, Any]:
    """The trainer state, loaded without running any pickled code, with every key a resume needs."""
    path = ckpt_dir / STATE_FILE
    try:
        with warnings.catch_warnings():
            # torch warns (asking for an issue to be filed) about pickles it then refuses anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's refusal of a pickle that is more than tensors and containers is many lines long
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only load failed" in first.lower():
            first = "it holds objects other than tensors and plain containers, which are not unpickled"
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {STATE_FILE} ({first}): "
                              "delete that checkpoint to resume from an earlier one") from None
    problems = [] if isinstance(state, dict) else ["not a mapping"]
    if not problems:
        for key, kind in STATE_KEYS.items():
            if key not in state:
                problems.append(f"no '{key}'")
            elif not isinstance(state[key], kind) or isinstance(state[key], bool):
                problems.append(f"'{key}' is a {type(state[key]).__name__}")
    if problems:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has a wrong {STATE_FILE} ({'; '.join(problems)}): "
                              "delete that checkpoint to resume from an earlier one")
    return state


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Load ``(model, tokenizer, ckpt_dir)`` from a checkpoint or run directory, in eval mode."""
    from lmforge.models import build_model
    from lmforge.tokenize import load_tokenizer

    ckpt_dir = resolve_checkpoint(path)
    model = build_model(read_model_config(ckpt_dir))
    load_weights(model, ckpt_dir)
    tokenizer = load_tokenizer(ckpt_dir / TOKENIZER_DIR)
    return model.to(device).eval(), tokenizer, ckpt_dir
