"""`lmforge sweep`'s options: which command to tune, its base recipe, the search space, the
study (trials, metric, pruner, sampler, storage) and the workers.

Loaded like every verb's config (``lmforge.config.load_config``); ``validate`` checks the search
space against the command's config class at load time (each key a real field, ranges well
formed). The values themselves are checked against the fields when the sweep starts
(``space.check_values``), since that needs the base recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

from lmforge.config import Check, between, non_negative, option, path_text, positive, random_seed, writable_dir
from lmforge.errors import ConfigError
from lmforge.sweep.commands import COMMANDS, get_command


def _is_command(name: Any) -> Union[bool, str]:
    return name in COMMANDS or f"a sweep runs {', '.join(COMMANDS)}"


registered_command = Check("registered_command", _is_command, {str: "a command a sweep can run"})


@dataclass
class PrunerConfig:
    """Stopping unpromising trials early from their periodic evaluations."""

    name: Literal["median", "none"] = option(
        "median", "median: stop a trial whose periodic metric is worse than the median of the earlier trials' "
                  "at the same step (Optuna's MedianPruner, from Google Vizier's median stopping rule); "
                  "none: every trial runs to the end")
    startup_trials: int = option(3, "trials that finish before any trial is pruned", check=non_negative)
    warmup_steps: int = option(0, "a trial is not pruned before this optimiser step", check=non_negative)


@dataclass
class SweepConfig:
    """`lmforge sweep RECIPE`: an Optuna study over config fields of a run command."""

    command: str = option("pretrain", "the command each trial runs (" + ", ".join(COMMANDS) + ")",
                          check=registered_command)
    recipe: str = option("", "the command's YAML recipe every trial starts from ('' = the command's defaults)",
                         check=path_text)
    overrides: dict = option({}, "dotted config keys set in every trial after the recipe, e.g. "
                                 "{train.max_steps: 200, train.eval_interval: 20}")
    space: dict = option({}, "the search space: dotted config key -> {low, high, log, step} (a number field; "
                             "int or float as the field) or {choices: [...]} (any field)")
    trials: int = option(20, "finished trials (complete, pruned or failed) the study should hold; a rerun "
                             "runs only the missing ones", check=positive)
    metric: str = option("val_loss", "the value of the command's summary a trial is scored by (its final "
                                     "evaluation); the same key in the periodic evaluations feeds the pruner")
    direction: Literal["minimize", "maximize"] = option("minimize", "whether a lower or a higher metric is better")
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    sampler: Literal["tpe", "random"] = option(
        "tpe", "tpe: Optuna's Tree-structured Parzen Estimator (Bergstra et al. 2011), random for the first "
               "tpe_startup_trials; random: independent uniform draws")
    tpe_startup_trials: int = option(10, "tpe: random trials before the sampler models the results",
                                     check=non_negative)
    seed: int = option(0, "sampler seed (each worker and each rerun draws from its own seed made from it)",
                       check=random_seed)
    storage: str = option("", "Optuna storage URL ('' = sqlite:///RUN_DIR/study.db); rerunning the sweep "
                              "continues the study found there")
    study_name: str = option("sweep", "the study's name in the storage")
    parallel: int = option(1, "worker processes running trials at once, each with cores/parallel torch threads",
                           check=between(1, 256))
    run_dir: str = option("runs/sweep", "results go here; trial N runs in RUN_DIR/trial_000N", check=writable_dir)

    def validate(self, prefix: str = "") -> None:
        """The space and overrides name fields of the command's config; the space is well formed."""
        from lmforge.sweep.space import check_key, parse_space

        cls = get_command(self.command).config_cls()
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"config key '{prefix}overrides': expected a mapping of dotted config keys to values, "
                              f"got {self.overrides!r}")
        self.overrides = flatten_overrides(cls, self.overrides)
        for key in self.overrides:
            check_key(cls, key, f"{prefix}overrides")
        params = parse_space(cls, self.space)
        both = [p.key for p in params if p.key in self.overrides]
        if both:
            raise ConfigError(f"config key '{prefix}space.{both[0]}' is also set in overrides: a key is either "
                              "searched or fixed, drop it from one of them")
        if not self.study_name:
            raise ConfigError(f"config key '{prefix}study_name' is empty: name the study")


def flatten_overrides(cls: type, overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{train: {max_steps: 5}}`` as ``{train.max_steps: 5}`` (a section's keys are set one by one,
    so the recipe's other keys in that section stay); a mapping *field*'s value stays whole."""
    import dataclasses

    from lmforge.config import field_type

    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dataclasses.is_dataclass(field_type(cls, str(dotted))):
            flat.update(flatten_overrides(cls, value, dotted + "."))
        else:
            flat[dotted] = value
    return flat
