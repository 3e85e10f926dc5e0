"""Checkpoints: one directory per save, written atomically, the newest N kept.

Layout of ``RUN_DIR/checkpoints/step_00001000/`` (docs/architecture.md, 'Checkpoints'):

- ``model.safetensors``  weights (tied tensors stored once)
- ``config.json``        typed sections (``CheckpointInfo``): ``model`` (the resolved
                         ``ModelConfig``), ``head`` (which head the weights are, and its labels),
                         ``task`` (what it was trained on, with options), ``tokenizer`` (where,
                         which kind and fingerprint), ``training`` (counters), ``imported_from``,
                         and ``adapters`` / ``base`` / ``quantization`` / ``sharding``, the
                         sections later kinds of checkpoint fill in
- ``tokenizer/``         a copy of the tokenizer the model was trained with
- ``trainer_state.pt``   optimiser, grad scaler, RNG and sampler state, step counters;
                         only tensors and plain containers, loaded with ``weights_only=True``

The directory is assembled under a temporary name (``.tmp-step_*``) and renamed into place,
so a crash mid-save never leaves something that looks like a checkpoint; the next training
run in the directory removes such leftovers (``remove_partial_saves``). A write that fails
(disk full, read-only, quota) is one ``CheckpointError`` line naming the file and the reason,
and the earlier checkpoints stay as they were. Weights or optimiser state holding a NaN or an
infinity are never written, and a checkpoint holding them is refused on load.

``load_checkpoint`` is the one loader: it builds the head the checkpoint declares (through the
model family registry) and loads what is declared. Checkpoints of the first format
(``lmforge-checkpoint-v1``: the model config plus untyped ``head``, ``id2label``,
``imported_from`` and ``tokens_seen`` fields) are read into the same sections.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from safetensors.torch import load_model, save_model

from lmforge.config import ModelConfig, build_config, option
from lmforge.errors import CheckpointError, ConfigError, LmforgeError
from lmforge.train.nonfinite import first_nonfinite_tensor

FORMAT = "lmforge-checkpoint-v2"
V1_FORMAT = "lmforge-checkpoint-v1"
MODEL_FILE = "model.safetensors"
ADAPTER_FILE = "adapter.safetensors"  # an adapter checkpoint's weights (adapter + fully trained modules only)
# Applies an adapter checkpoint (base, adapter, weights). Found by name: it builds on this module
# (the base is read through train.init_from), so importing it here would make a cycle.
ADAPTER_LOADER = "lmforge.finetune.adapter_checkpoint"
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
    """The files a checkpoint needs that ``ckpt_dir`` lacks (an adapter checkpoint holds
    ``adapter.safetensors`` instead of ``model.safetensors``)."""
    weights = MODEL_FILE if not (ckpt_dir / ADAPTER_FILE).exists() else ADAPTER_FILE
    return [name for name in (weights, CONFIG_FILE, TOKENIZER_DIR) if not (ckpt_dir / name).exists()]


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
    if (path / CONFIG_FILE).exists() or (path / MODEL_FILE).exists() or (path / ADAPTER_FILE).exists():
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


# --------------------------------------------------------------------------- config.json sections


def _mapping(value: Any, key: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")


@dataclass
class HeadSection:
    """Which of its family's heads the weights are (``Family.heads``), and a classifier's labels."""

    name: str = option("", "the head: causal_lm, masked_lm, sequence_classification, token_classification, "
                           "seq2seq_lm (one of the model family's)")
    id2label: dict = option({}, "a classifier's label names by class id (empty: LABEL_i)")

    def validate(self, prefix: str = "") -> None:
        _mapping(self.id2label, prefix + "id2label")
        bad = [key for key in self.id2label if not str(key).isdigit()]
        if bad:
            raise ConfigError(f"config key '{prefix}id2label': expected class ids 0, 1, ... as keys, got {bad[0]!r}")

    def labels(self) -> dict[int, str]:
        return {int(i): str(label) for i, label in self.id2label.items()}


@dataclass
class TaskSection:
    """The task the weights were trained on (``lmforge tasks``) and its options."""

    name: str = option("", "the registered task")
    options: dict = option({}, "its options")

    def validate(self, prefix: str = "") -> None:
        _mapping(self.options, prefix + "options")


@dataclass
class TokenizerSection:
    """The tokenizer saved beside the weights (a directory inside the checkpoint)."""

    dir: str = option(TOKENIZER_DIR, "its directory, relative to the checkpoint")
    kind: str = option("", "its kind (byte_bpe, wordpiece, ...)")
    vocab_size: int = option(0, "its vocabulary size (the model's may be larger)")
    fingerprint: str = option("", "SHA-256 of its kind and model, as token shards record it")

    def validate(self, prefix: str = "") -> None:
        path = Path(self.dir)
        if not self.dir or path.is_absolute() or ".." in path.parts:
            raise ConfigError(f"config key '{prefix}dir': expected a directory inside the checkpoint, got {self.dir!r}")


@dataclass
class CheckpointInfo:
    """A checkpoint's ``config.json``, typed. ``adapters``, ``base`` (the checkpoint adapters
    apply to), ``quantization`` and ``sharding`` are the places later kinds of checkpoint fill
    in; this version writes them empty and `load_checkpoint` says so when it meets one set."""

    format: str = option(FORMAT, "the checkpoint format")
    step: int = option(0, "optimiser steps taken")
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadSection = field(default_factory=HeadSection)
    task: Optional[TaskSection] = option(None, "the training task (none for imported or v1 checkpoints)")
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    adapters: list[dict] = option([], "adapters applied over the weights")
    base: Optional[dict] = option(None, "the checkpoint the adapters apply to")
    quantization: Optional[dict] = option(None, "how the weights are quantised")
    sharding: Optional[dict] = option(None, "how the weights are split over files or ranks")
    training: dict = option({}, "counters of the run (tokens_seen, ...)")
    imported_from: Optional[dict] = option(None, "where an imported checkpoint came from")

    def validate(self, prefix: str = "") -> None:
        _mapping(self.training, prefix + "training")
        for index, adapter in enumerate(self.adapters):
            _mapping(adapter, f"{prefix}adapters[{index}]")
        for name in ("base", "quantization", "sharding", "imported_from"):
            if getattr(self, name) is not None:
                _mapping(getattr(self, name), prefix + name)

    def unapplied_sections(self) -> list[str]:
        """The declared sections this version cannot apply yet."""
        return [name for name in ("quantization", "sharding") if getattr(self, name)]


def _tokenizer_section(tokenizer: Any) -> dict[str, Any]:
    return {"dir": TOKENIZER_DIR, "kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
            "fingerprint": tokenizer.fingerprint()}


def _as_tokenizer(tokenizer: Any) -> Any:
    """A tokenizer object, from itself or from the directory it was saved in."""
    from lmforge.tokenize import Tokenizer, load_tokenizer

    return tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)


def write_model_files(directory: Path, model: torch.nn.Module, model_cfg: ModelConfig, step: int,
                      sections: Optional[dict[str, Any]] = None, shown_dir: Optional[Path] = None) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (which must exist;
    errors name ``shown_dir`` instead, the place the files are bound for). ``sections`` are
    `CheckpointInfo` fields beside format, step and model (checked before anything is written).
    Shared by ``save_checkpoint`` and HF import (``lmforge.interop.convert``)."""
    shown_dir = shown_dir or directory
    bad = first_nonfinite_tensor(model.state_dict().items())
    if bad is not None:
        raise CheckpointError(f"refusing to write {shown_dir}: weight '{bad}' holds a NaN or an infinity "
                              "(training diverged; see --train.on_nonfinite)")
    info = CheckpointInfo(step=step, model=model_cfg)
    config = {**dataclasses.asdict(info), **(sections or {})}
    build_config(CheckpointInfo, config)  # a wrong section is a bug of the caller: fail before writing
    _write(directory / MODEL_FILE, lambda: save_model(model, str(directory / MODEL_FILE)), shown_dir / MODEL_FILE)
    _write(directory / CONFIG_FILE,
           lambda: (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8"),
           shown_dir / CONFIG_FILE)


def write_adapter_files(directory: Path, weights: dict[str, torch.Tensor], model_cfg: ModelConfig, step: int,
                        sections: dict[str, Any], shown_dir: Optional[Path] = None) -> None:
    """``adapter.safetensors`` and ``config.json`` of an adapter checkpoint (as `write_model_files`)."""
    from safetensors.torch import save_file

    shown_dir = shown_dir or directory
    bad = first_nonfinite_tensor(weights.items())
    if bad is not None:
        raise CheckpointError(f"refusing to write {shown_dir}: adapter weight '{bad}' holds a NaN or an infinity "
                              "(training diverged; see --train.on_nonfinite)")
    config = {**dataclasses.asdict(CheckpointInfo(step=step, model=model_cfg)), **sections}
    build_config(CheckpointInfo, config)
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in weights.items()}
    _write(directory / ADAPTER_FILE, lambda: save_file(tensors, str(directory / ADAPTER_FILE)),
           shown_dir / ADAPTER_FILE)
    _write(directory / CONFIG_FILE,
           lambda: (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8"),
           shown_dir / CONFIG_FILE)


def load_adapter_weights(model: torch.nn.Module, ckpt_dir: Path) -> None:
    """Load an adapter checkpoint's ``adapter.safetensors`` into ``model`` (its adapter already applied)."""
    from safetensors.torch import load_file

    from lmforge.finetune.adapters import load_adapter_state_dict

    try:
        weights = load_file(str(ckpt_dir / ADAPTER_FILE))
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {ADAPTER_FILE} "
                              f"({type(err).__name__}: {err}): use another checkpoint") from None
    bad = first_nonfinite_tensor(weights.items())
    if bad is not None:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has non-finite adapter weights ('{bad}'): use an earlier "
                              "checkpoint")
    load_adapter_state_dict(model, weights)


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


@dataclass(frozen=True)
class AdapterSave:
    """What an adapter checkpoint holds instead of the whole model: the adapter's section
    (``{"name", "options"}``), its weights (adapter and fully trained modules, lmforge names) and
    the base they apply to (``{"path", "fingerprint"}``)."""

    section: dict[str, Any]
    weights: dict[str, torch.Tensor]
    base: dict[str, Any]


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, model_cfg: ModelConfig,
                    tokenizer: Any, trainer_state: dict[str, Any], keep_last: int = 2, *,
                    head: Optional[str] = None, task: Optional[dict[str, Any]] = None,
                    training: Optional[dict[str, Any]] = None, id2label: Optional[dict[int, str]] = None,
                    adapter: Optional[AdapterSave] = None) -> Path:
    """Write ``run_dir/checkpoints/step_{step:08d}`` atomically and prune to ``keep_last``.

    ``tokenizer``: the run's tokenizer (or the directory it is saved in); ``head``: the head the
    model is (None: read off its parameter names), ``id2label`` a classifier's label names;
    ``task``: ``{"name": ..., "options": {...}}``; ``training``: counters such as tokens_seen.
    With ``adapter`` only the adapter's weights are written (``adapter.safetensors``) and the
    config names the base they apply to."""
    from lmforge.models import head_of_weights

    if adapter is None:
        is_head = head_of_weights(model_cfg, set(model.state_dict()))
        if head is not None and head != is_head:
            raise CheckpointError(f"save_checkpoint was told head '{head}' but the model is a {is_head} model")
    elif head is None:
        raise CheckpointError("save_checkpoint needs the head of an adapter checkpoint (its weights do not show it)")
    else:
        is_head = head
    tokenizer = _as_tokenizer(tokenizer)
    sections = {"head": {"name": is_head, "id2label": {str(i): label for i, label in (id2label or {}).items()}},
                "task": task, "tokenizer": _tokenizer_section(tokenizer), "training": training or {}}
    if adapter is not None:
        sections.update(adapters=[adapter.section], base=adapter.base)
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
        if adapter is None:
            write_model_files(tmp, model, model_cfg, step, sections, shown_dir=final)
        else:
            write_adapter_files(tmp, adapter.weights, model_cfg, step, sections, shown_dir=final)
        _write(tmp / TOKENIZER_DIR, lambda: tokenizer.save(tmp / TOKENIZER_DIR), final / TOKENIZER_DIR)
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


def read_checkpoint_info(ckpt_dir: Path) -> CheckpointInfo:
    """The checkpoint's ``config.json`` as typed sections, checked like a recipe (unknown keys
    and wrong types are one line). A v1 file is read into the same sections; its head, when
    it does not name one, is read off the weights' names (`_head_of_weights`)."""
    try:
        config = json.loads((ckpt_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise TypeError(f"it holds a {type(config).__name__}, not a mapping")
        if not isinstance(config["model"], dict):
            raise TypeError(f"'model' is {type(config['model']).__name__}, not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {CONFIG_FILE} ({err}): "
                              "use another checkpoint or retrain") from None
    v1 = config.get("format", V1_FORMAT) == V1_FORMAT
    try:
        if v1:
            return _info_from_v1(config, ckpt_dir)
        if config.get("format") != FORMAT:
            raise ConfigError(f"config key 'format': expected {FORMAT!r} or {V1_FORMAT!r}, got {config.get('format')!r}")
        return build_config(CheckpointInfo, config)
    except LmforgeError as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has a wrong {CONFIG_FILE}: {err}; "
                              "use another checkpoint or retrain") from None


def _info_from_v1(config: dict[str, Any], ckpt_dir: Path) -> CheckpointInfo:
    """A v1 ``config.json`` (model config; ``head``, ``id2label``, ``imported_from``,
    ``tokens_seen`` beside it) in v2 sections."""
    training = {"tokens_seen": config["tokens_seen"]} if "tokens_seen" in config else {}
    info = build_config(CheckpointInfo, {
        "format": V1_FORMAT, "step": config.get("step", 0), "model": config["model"],
        "head": {"name": config.get("head") or "", "id2label": config.get("id2label") or {}}, "task": None,
        "tokenizer": {"dir": TOKENIZER_DIR}, "training": training, "imported_from": config.get("imported_from")})
    if not info.head.name:
        info.head.name = _head_of_weights(ckpt_dir, info.model)
    return info


def _weight_names(ckpt_dir: Path) -> set[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(ckpt_dir / MODEL_FILE), "pt") as weights:
            return set(weights.keys())
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has an unreadable {MODEL_FILE} "
                              f"({type(err).__name__}: {err}): use another checkpoint") from None


def _head_of_weights(ckpt_dir: Path, model_cfg: ModelConfig) -> str:
    """The head whose parameter names are the weights' (v1 checkpoints named a BERT
    classifier's head only sometimes, and a masked LM's never)."""
    from lmforge.models import head_of_weights

    return head_of_weights(model_cfg, _weight_names(ckpt_dir))


def _refuse_other_head(ckpt_dir: Path, info: CheckpointInfo, names: set[str]) -> None:
    """One line for weights that are another head than the config says (else `load_weights`
    names the missing and unexpected tensors)."""
    from lmforge.models import head_of_weights

    try:
        actual = head_of_weights(info.model, names)
    except ConfigError:
        return
    raise CheckpointError(f"checkpoint '{ckpt_dir}' says head '{info.head.name}' but its weights are those of a "
                          f"{actual} model: fix the head section of its {CONFIG_FILE}")


def read_model_config(ckpt_dir: Path) -> ModelConfig:
    """The checkpoint's model config, type- and range-checked like a recipe."""
    return read_checkpoint_info(ckpt_dir).model


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
    """Load ``(model, tokenizer, ckpt_dir)`` from a checkpoint or run directory, in eval mode:
    the head its ``head`` section declares, with its weights. Sections this version cannot
    apply yet (adapters, quantization, sharding) are a one-line CheckpointError."""
    from lmforge.models import build_model, weights_fit
    from lmforge.tokenize import load_tokenizer

    ckpt_dir = resolve_checkpoint(path)
    info = read_checkpoint_info(ckpt_dir)
    unapplied = info.unapplied_sections()
    if unapplied:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' declares {', '.join(unapplied)}, which this version of "
                              "lmforge cannot apply yet: load it with a version that can")
    try:
        model = build_model(info.model, info.head.name)
    except ConfigError as err:
        raise CheckpointError(f"checkpoint '{ckpt_dir}' has a wrong {CONFIG_FILE}: {err}; "
                              "use another checkpoint or retrain") from None
    tokenizer = load_tokenizer(ckpt_dir / info.tokenizer.dir)
    if bool(info.adapters) != bool(info.base):
        raise CheckpointError(f"checkpoint '{ckpt_dir}' declares {'adapters but no base' if info.adapters else 'a base but no adapters'} "
                              f"in its {CONFIG_FILE}: an adapter checkpoint names both; use another checkpoint")
    if info.adapters:
        importlib.import_module(ADAPTER_LOADER).load_adapter_checkpoint(model, ckpt_dir, info)
        return model.to(device).eval(), tokenizer, ckpt_dir
    names = _weight_names(ckpt_dir)
    if not weights_fit(model, names):
        _refuse_other_head(ckpt_dir, info, names)
    load_weights(model, ckpt_dir)
    return model.to(device).eval(), tokenizer, ckpt_dir
