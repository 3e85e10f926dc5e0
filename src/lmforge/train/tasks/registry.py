"""The contract between the training loop and its tasks, and the registry that finds them by name.

A task is what a run optimises: its objective (``loss, metrics = task.loss(model, batch)``),
the data it draws its batches from, and how it measures itself. Tasks are registered like
data steps (`lmforge.data.steps.register_step`): a name, a typed options dataclass (fields
made with `lmforge.config.option`, so `task.options` in a recipe is validated like any other
config, one line naming the key) and a one-line summary. `lmforge tasks` lists them.

A run's config names its task (``task.name``; empty = the model family's default task) and
its options (``task.options``). The loop only ever talks to the `Task` and `TaskData`
protocols below, so a new objective with its own data (JSONL examples, preference pairs,
prompts) is one new file in this package that registers itself and is listed in
the ``_TASKS`` registry's module list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import torch

from lmforge.errors import ConfigError
from lmforge.kinds import KindRegistry, KindSpec

if TYPE_CHECKING:
    from lmforge.config import ModelConfig, TrainConfig
    from lmforge.train.parallel import World

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TaskContext:
    """What a task is built from: the run's tokenizer and the resolved model config (vocabulary
    already sized, `Task.extra_vocab` included)."""

    tokenizer: Any
    model_cfg: "ModelConfig"


class TaskData(Protocol):
    """A task's training and validation data as the loop reads it. Its ``state_dict`` goes into
    every checkpoint, so a resumed run draws exactly the batches the uninterrupted one would."""

    tokens_per_step: int  # raw tokens one optimiser step reads over all processes (budgets, MFU)

    def next_step(self) -> list[Batch]:
        """This process's micro-batches (``train.grad_accum`` of them, on the CPU) of the next
        optimiser step."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def evaluate(self, model: torch.nn.Module, device: torch.device, precision: str) -> dict[str, float]:
        """Periodic validation on a fixed part of the val data (keys start with ``val_``,
        ``val_loss`` always among them)."""

    def final_evaluation(self, model: torch.nn.Module, device: torch.device, precision: str) -> dict[str, float]:
        """Metrics on all the val data, for ``summary.json`` (keys start with ``val_``)."""

    def describe(self) -> str:
        """A few words on the data for the run's first lines ("train split 1,234 tokens")."""


class Task(Protocol):
    name: str
    head: ClassVar[str]  # the model head it trains (`lmforge.models.registry.Family.heads`)
    extra_vocab: ClassVar[int]  # ids the task adds beyond the tokenizer's (T5's sentinels)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean loss of a micro-batch and the task's own metrics (e.g. masked-token accuracy)."""

    def flops_per_token(self, model_cfg: "ModelConfig", seq_len: int) -> float:
        """Training FLOPs per raw token read, the figure MFU multiplies by the tokens per second."""

    def open_data(self, train: "TrainConfig", world: "World") -> TaskData:
        """The task's training data for a run (``train.*`` says where it is and how it is batched)."""

    def report(self, model: torch.nn.Module, tokens: Any, num_bytes: int, seq_len: int, batch_size: int,
               device: torch.device, precision: str) -> dict[str, float]:
        """What `lmforge evaluate` prints for held-out ``tokens`` (covering ``num_bytes`` bytes of text)."""


TaskSpec = KindSpec  # name, options_cls, cls (has ``build(options, context) -> Task``, ``head``, ``extra_vocab``), summary

# Modules whose import registers tasks (listed, not discovered, as data steps are: `lmforge.kinds`).
_TASKS = KindRegistry("task", (
    "lmforge.train.tasks.causal_lm",
    "lmforge.train.tasks.masked_lm",
    "lmforge.train.tasks.span_corruption",
    "lmforge.finetune.tasks.sft",
    "lmforge.finetune.tasks.sequence_classification",
    "lmforge.finetune.tasks.token_classification",
    "lmforge.finetune.tasks.seq2seq",
))


def register_task(name: str, options_cls: type, summary: str) -> Callable[[type], type]:
    """Class decorator: make ``TaskClass.build(options, context)`` the task ``task.name: NAME``."""
    return _TASKS.register(name, options_cls, summary)


def registered_tasks() -> dict[str, TaskSpec]:
    return _TASKS.all()


def default_task(family: str) -> str:
    """The task a model family pretrains with when the config names none."""
    from lmforge.models.registry import get_family

    return get_family(family).default_task


def task_spec(name: str, key: str = "task.name") -> TaskSpec:
    """The registered task ``name``; ConfigError naming ``key`` and the known tasks otherwise."""
    tasks = registered_tasks()
    if name not in tasks:
        raise ConfigError(f"config key '{key}': unknown task {name!r}; choose one of {', '.join(tasks)} "
                          "(`lmforge tasks` lists them)")
    return tasks[name]


def task_options(spec: TaskSpec, options: dict[str, Any], prefix: str = "task.options.") -> Any:
    """``options`` checked and built into the task's options dataclass, exactly like a config
    section: an unknown key or a bad value is one ConfigError line naming ``prefix + key``."""
    from lmforge.config import _build

    if not isinstance(options, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}': expected a mapping of {spec.name} options, "
                          f"got {options!r}")
    return _build(spec.options_cls, dict(options), prefix=prefix)


def build_task(name: str, options: dict[str, Any], context: TaskContext) -> Task:
    """The task ``name`` with ``options`` (a plain mapping, validated here) for ``context``."""
    spec = task_spec(name)
    return spec.cls.build(task_options(spec, options), context)


def options_dict(options: Any) -> dict[str, Any]:
    """A task's options dataclass as the plain mapping saved in configs and checkpoints."""
    return dataclasses.asdict(options)


def move_batch(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
