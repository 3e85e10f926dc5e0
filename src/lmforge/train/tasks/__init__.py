"""What the training loop optimises: registered tasks, each owning its objective, data and evaluation.

``registry.py`` holds the contract (`Task`, `TaskData`) and the registry (`register_task`,
`build_task`, `registered_tasks`); each task is one file that registers itself; token-shard
data shared by the pretraining tasks is ``shard_data.py``.
"""

from lmforge.train.tasks.causal_lm import CausalLMOptions, CausalLMTask
from lmforge.train.tasks.masked_lm import MaskedLMOptions, MaskedLMTask
from lmforge.train.tasks.registry import (Batch, Task, TaskContext, TaskData, TaskSpec, build_task, default_task,
                                          move_batch, options_dict, register_task, registered_tasks, task_options,
                                          task_spec)
from lmforge.train.tasks.shard_data import ShardData, ShardTask
from lmforge.train.tasks.span_corruption import SpanCorruptionOptions, SpanCorruptionTask

__all__ = ["Batch", "CausalLMOptions", "CausalLMTask", "MaskedLMOptions", "MaskedLMTask", "ShardData", "ShardTask",
           "SpanCorruptionOptions", "SpanCorruptionTask", "Task", "TaskContext", "TaskData", "TaskSpec", "build_task",
           "default_task", "move_batch", "options_dict", "register_task", "registered_tasks", "task_options",
           "task_spec"]
