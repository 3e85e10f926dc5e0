"""Set-up of a training run: tokenizer, task, model, data, optimiser, from a `PretrainConfig`.

`build_training` is the one place a run's parts are made, so recipes with their own loop (an
RL rollout loop, an adversarial inner loop, distillation with a teacher) build theirs here and
step them with `step.optimizer_step`, instead of copying this code. The order matters for
exact reproduction: the torch seed is set just before the model is built, so its init is a
function of ``train.seed`` alone.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from lmforge.config import AdapterConfig, ModelConfig, PretrainConfig, TaskConfig, TrainConfig
from lmforge.errors import ConfigError
from lmforge.train.init_from import InitSource, read_init_source, source_model_config
from lmforge.train.parallel import World, resolve_device, wrap_data_parallel
from lmforge.train.tasks import (Task, TaskContext, TaskData, TaskSpec, default_task, options_dict, task_options,
                                 task_spec)


@dataclass
class Training:
    """Everything a run trains with. ``train_model`` is what the forward pass calls (the model,
    wrapped for data parallelism and compiled when asked); ``model`` is the bare module that
    checkpoints save and evaluation uses."""

    cfg: PretrainConfig
    world: World
    device: torch.device
    tokenizer: Any
    model_cfg: ModelConfig
    model: torch.nn.Module
    train_model: torch.nn.Module
    head: str  # the model head the task trains
    task_cfg: TaskConfig  # the task's name and every option, as saved
    task: Task
    data: TaskData
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    initialised_from: Optional[Path] = None  # train.init_from, when its weights were loaded
    adapter: Optional["AppliedAdapter"] = None  # the adapter trained instead of the whole model
    source: Optional[InitSource] = None  # train.init_from (the base an adapter applies to)
    load_report: Any = None  # what train.init_from lacked (new) and what the model had no place for (dropped)


@dataclass(frozen=True)
class AppliedAdapter:
    """An adapter applied to the run's model: its kind, options (every one filled in, as saved)
    and the modules it wraps."""

    name: str
    options: Any
    wrapped: tuple[str, ...]
    base_fingerprint: str  # of the frozen base, taken once: it does not change while the adapter trains

    def section(self) -> dict[str, Any]:
        return {"name": self.name, "options": dataclasses.asdict(self.options)}


def resolve_task(cfg: PretrainConfig, family: str) -> tuple[TaskSpec, Any, TaskConfig]:
    """The run's task (``task.name``, or model ``family``'s default), its options dataclass, and
    both as the config saved (every option filled in); a bad name or option is one ConfigError
    line naming its key."""
    spec = task_spec(cfg.task.name or default_task(family))
    options = task_options(spec, cfg.task.options)
    return spec, options, TaskConfig(name=spec.name, options=options_dict(options))


def _model_config(cfg: PretrainConfig, tokenizer: Any, spec: TaskSpec, source: Optional[InitSource]) -> ModelConfig:
    """The resolved model config: the source's with ``train.init_from``, else ``model.*`` with the
    vocabulary sized to the tokenizer plus the ids the task adds."""
    from lmforge.models import resolve_model_config

    t = cfg.train
    if source is not None:
        model_cfg = source_model_config(cfg.model, source)
    else:
        model_cfg = resolve_model_config(dataclasses.replace(
            cfg.model, vocab_size=cfg.model.vocab_size or tokenizer.vocab_size + spec.cls.extra_vocab))
    if model_cfg.vocab_size < tokenizer.vocab_size and source is not None:
        raise ConfigError(f"train.init_from '{t.init_from}' has {model_cfg.vocab_size} embeddings, fewer than the "
                          f"tokenizer's {tokenizer.vocab_size} ids: pass the tokenizer it was trained with")
    if model_cfg.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"config key 'model.vocab_size': {model_cfg.vocab_size} is smaller than the "
                          f"tokenizer's {tokenizer.vocab_size}; set it to 0 to take the tokenizer's")
    if t.seq_len > model_cfg.max_seq_len:
        raise ConfigError(f"config key 'train.seq_len': {t.seq_len} exceeds model.max_seq_len "
                          f"{model_cfg.max_seq_len}; lower it or raise model.max_seq_len")
    return model_cfg


def task_head(spec: TaskSpec, family: str) -> str:
    """The head ``spec``'s task trains, which the model family must have."""
    from lmforge.models.registry import get_family

    heads = get_family(family).heads
    if spec.cls.head not in heads:
        raise ConfigError(f"config key 'task.name': task {spec.name} trains a {spec.cls.head} head, which model "
                          f"family {family} does not have (its heads: {', '.join(heads)}); choose another task, "
                          "or leave task.name empty for the family's own")
    return spec.cls.head


def run_tokenizer(train: TrainConfig) -> Any:
    """``train.tokenizer_dir``'s tokenizer, or (empty) the one ``train.init_from`` was saved with."""
    from lmforge.tokenize import load_tokenizer

    if train.tokenizer_dir:
        return load_tokenizer(train.tokenizer_dir)
    if not train.init_from:
        raise ConfigError("config key 'train.tokenizer_dir' is empty and there is no train.init_from to take the "
                          "tokenizer from: pass the tokenizer directory (`lmforge tokenizer` writes one)")
    from lmforge.train.init_from import source_tokenizer

    return source_tokenizer(train.init_from)


def apply_task_overrides(model_cfg: ModelConfig, task: Task) -> ModelConfig:
    """``model_cfg`` with what the task fixes (a classifier's ``num_labels``: `Task.model_overrides`)."""
    overrides = getattr(task, "model_overrides", None)
    return dataclasses.replace(model_cfg, **overrides()) if overrides is not None else model_cfg


def freeze_parameters(model: torch.nn.Module, patterns: list[str]) -> int:
    """Turn off gradients of the parameters whose names match a pattern of ``optim.freeze``
    (fnmatch); returns how many tensors were frozen. A pattern matching nothing is a ConfigError
    (a typo would otherwise train what was meant to stay fixed)."""
    names = [name for name, _ in model.named_parameters()]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ConfigError(f"config key 'optim.freeze': pattern {pattern!r} matches no parameter; names look like "
                              f"{', '.join(names[:3])}, ..., {names[-1]}")
    frozen = 0
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def new_modules(report: Any) -> list[str]:
    """The modules whose weights ``train.init_from`` did not have (a new classifier head, a pooler)."""
    if report is None:
        return []
    return list(dict.fromkeys(name.rsplit(".", 1)[0] for name in report.new if "." in name))


def apply_adapter_config(model: torch.nn.Module, adapter: AdapterConfig,
                         untrained: Optional[list[str]] = None) -> Optional[AppliedAdapter]:
    """Wrap ``model`` with the adapter ``adapter.name`` asks for (None: full fine-tuning).
    ``untrained`` modules (weights the source lacked, e.g. a new classifier) are added to the
    adapter's ``train_modules``: frozen at their random init they would make the run useless
    (PEFT adds a classifier to modules_to_save the same way); the saved options list them."""
    if not adapter.name:
        return None
    from lmforge.finetune.adapters import adapter_options, adapter_spec, apply_adapter

    spec = adapter_spec(adapter.name)
    options = adapter_options(spec, adapter.options)
    if untrained and hasattr(options, "train_modules"):
        extra = [name for name in untrained if name not in options.train_modules]
        options = dataclasses.replace(options, train_modules=list(options.train_modules) + extra)
    from lmforge.finetune.adapters import base_fingerprint

    wrapped = apply_adapter(model, spec.name, options)
    return AppliedAdapter(spec.name, options, tuple(wrapped), base_fingerprint(model))


def build_training(cfg: PretrainConfig, world: World, *, resuming: bool = False) -> Training:
    """Build every part of a run on its device. With ``train.init_from`` the model config is the
    source's, and the model starts from its weights unless ``resuming`` (the run's own checkpoint
    then replaces them; with an adapter the source's weights are the base, always loaded, and
    the checkpoint holds the adapter); the optimiser is always fresh."""
    from lmforge.models import build_model
    from lmforge.train.optim import build_optimizer

    t = cfg.train
    adapter_cfg = getattr(cfg, "adapter", None) or AdapterConfig()
    device = resolve_device(t.device, world)
    tokenizer = run_tokenizer(t)
    source = read_init_source(t.init_from, tokenizer, t.tokenizer_dir) if t.init_from else None
    spec, options, task_cfg = resolve_task(cfg, source.model_cfg.family if source is not None else cfg.model.family)
    model_cfg = _model_config(cfg, tokenizer, spec, source)
    head = task_head(spec, model_cfg.family)
    task = spec.cls.build(options, TaskContext(tokenizer, model_cfg))
    model_cfg = apply_task_overrides(model_cfg, task)
    data = task.open_data(t, world)
    torch.manual_seed(t.seed)
    model = build_model(model_cfg, head)
    loaded = source is not None and (not resuming or bool(adapter_cfg.name))
    report = source.load_into(model) if loaded else None
    freeze_parameters(model, cfg.optim.freeze)
    adapter = apply_adapter_config(model, adapter_cfg, new_modules(report))
    model = model.to(device)
    return Training(cfg, world, device, tokenizer, model_cfg, model, model, head, task_cfg, task, data,
                    build_optimizer(model, cfg.optim, device.type),
                    torch.amp.GradScaler(device.type, enabled=t.precision == "fp16"),
                    source.path if loaded and not resuming else None, adapter, source,
                    report if loaded and not resuming else None)


def wrap_for_training(training: Training) -> None:
    """Data parallelism (DDP over the world) and ``torch.compile`` when asked, applied from outside."""
    training.train_model = wrap_data_parallel(training.model, training.world, training.device)
    if training.cfg.train.compile:
        training.train_model = torch.compile(training.train_model)


def task_labels(task: Task) -> Optional[dict[int, str]]:
    """A classifier task's label names by class id (`Task.id2label`), None for other tasks."""
    id2label = getattr(task, "id2label", None)
    return id2label() if id2label is not None else None


def adapter_save(training: Training) -> Optional[Any]:
    """What a checkpoint of an adapter run holds (`checkpoint.AdapterSave`; None: the whole model is saved)."""
    if training.adapter is None:
        return None
    from lmforge.finetune.adapters import adapter_state_dict
    from lmforge.train import checkpoint as ckpt

    base = {"path": str(training.source.path.resolve()), "fingerprint": training.adapter.base_fingerprint}
    return ckpt.AdapterSave(training.adapter.section(), adapter_state_dict(training.model), base)
