"""The run verbs a sweep can tune: each a config class and the function that runs it.

A command is named by two import paths (``module:attribute``), resolved only when a sweep
uses it, so that loading a sweep recipe imports neither torch nor the command's module. A
command's run function takes ``(cfg, on_step)`` and returns its summary (the dict written to
``summary.json``); ``on_step(step, record)`` is called after each logged optimiser step, with
the periodic evaluation's metrics (``val_loss``, ...) in ``record`` at evaluation steps. Its
config has a ``train`` section whose ``run_dir`` the sweep sets per trial.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from lmforge.errors import ConfigError


@dataclass(frozen=True)
class Command:
    """A tunable verb: its config class and run function, as ``module:attribute`` paths."""

    config: str
    run: str

    def config_cls(self) -> type:
        return _resolve(self.config)

    def run_fn(self) -> Callable[..., dict[str, Any]]:
        return _resolve(self.run)


COMMANDS: dict[str, Command] = {
    "pretrain": Command("lmforge.config:PretrainConfig", "lmforge.train.loop:pretrain"),
    "finetune": Command("lmforge.config:FinetuneConfig", "lmforge.finetune.run:finetune"),
}


def _resolve(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def get_command(name: str) -> Command:
    """The command ``name``; ConfigError listing the known ones."""
    if name not in COMMANDS:
        raise ConfigError(f"config key 'command': unknown command {name!r}; a sweep runs one of {', '.join(COMMANDS)}")
    return COMMANDS[name]
