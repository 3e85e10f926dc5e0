"""A sweep resolved for running: the command, its base config, the checked space and the study's
place. A ``Plan`` is what every worker process receives (it pickles: plain dataclasses).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from lmforge.config import config_to_dict, field_type, load_config
from lmforge.errors import ConfigError
from lmforge.sweep.commands import Command, get_command
from lmforge.sweep.config import SweepConfig
from lmforge.sweep.space import Param, check_values, parse_space

TRIAL_CONFIG = "trial_config.yaml"


@dataclass(frozen=True)
class Plan:
    cfg: SweepConfig
    command: Command  # resolved once: a worker process runs what the parent checked
    params: tuple[Param, ...]
    run_dir: Path  # absolute: workers and the storage URL do not depend on the working directory
    storage: str

    def trial_dir(self, number: int) -> Path:
        return self.run_dir / f"trial_{number:04d}"

    def build(self, values: dict[str, Any], run_dir: Path) -> Any:
        """The command's config: recipe, then the sweep's overrides, then ``values``, with
        ``train.run_dir`` = ``run_dir``; checked exactly as `lmforge COMMAND` checks its own."""
        overrides = {**self.cfg.overrides, **values, "train.run_dir": str(run_dir)}
        return load_config(self.command.config_cls(), self.cfg.recipe or None, overrides)

    def param(self, key: str) -> Optional[Param]:
        return next((p for p in self.params if p.key == key), None)

    def signature(self) -> dict[str, Any]:
        """What makes two runs of a sweep the same study: command, metric, direction, space and
        the base config (recipe + overrides, without run_dir and the searched keys). Stored with the study; a rerun that
        differs is refused (`study.check_signature`)."""
        base = flat(config_to_dict(self.build({}, self.trial_dir(0))))
        for key in ("train.run_dir", *(p.key for p in self.params)):  # set per trial: the recipe's value is unused
            base.pop(key, None)
        signature = {"command": self.cfg.command, "metric": self.cfg.metric, "direction": self.cfg.direction,
                     "space": {p.key: p.as_dict() for p in self.params}, "base": base}
        return json.loads(json.dumps(signature))  # as the storage gives it back (tuples are lists)


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def make_plan(cfg: SweepConfig) -> Plan:
    """Resolve ``cfg``: the base config builds, every bound and choice of the space is a value its
    field accepts (ConfigError naming the key otherwise)."""
    command = get_command(cfg.command)
    cls = command.config_cls()
    if field_type(cls, "train.run_dir") is None:
        raise ConfigError(f"command {cfg.command!r} has no train.run_dir: a sweep cannot place its trials")
    run_dir = Path(cfg.run_dir).absolute()
    storage = cfg.storage or f"sqlite:///{run_dir / 'study.db'}"
    params = parse_space(cls, cfg.space)
    plan = Plan(cfg, command, tuple(params), run_dir, storage)
    try:
        plan.build({}, plan.trial_dir(0))
    except ConfigError as err:
        recipe = f"recipe {cfg.recipe} + overrides" if cfg.recipe else "overrides"
        raise ConfigError(f"the sweep's base config ({recipe}) is refused: {err}") from None
    checked = check_values(params, lambda values: plan.build(values, plan.trial_dir(0)))
    return dataclasses.replace(plan, params=tuple(checked))
