"""One trial: draw the space's values, build the command's config, run it in this process.

The run's periodic evaluations are reported to Optuna as intermediate values (``trial.report``),
and the pruner is asked after each: a pruned trial is stopped by raising ``TrialPruned`` out of
the run's ``on_step`` hook. The run releases its directory's lock on any exception (`pretrain`'s
``finally``), so a pruned trial leaves its directory as an interrupted run does: free, with the
metrics logged so far. A run that stops on a user error (``LmforgeError``: a diverged loss, a
config the field checks accept but the model refuses) is a failed trial with its message; the
study goes on. Anything else (a bug, an interrupt) propagates and stops the sweep.

The run's own output (progress lines) goes to ``RUN_DIR/trial_NNNN/train.log``.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from dataclasses import dataclass
from typing import Any, Optional

from lmforge.config import save_config
from lmforge.errors import LmforgeError
from lmforge.sweep.plan import TRIAL_CONFIG, Plan

# user attributes a trial keeps in the storage
RUN_DIR_ATTR, CONFIG_ATTR, STEPS_ATTR, ERROR_ATTR, SUMMARY_ATTR = "run_dir", "config", "steps", "error", "summary"


@dataclass
class Outcome:
    """How a trial ended: state "complete" (with its ``value``), "pruned" (value: its last
    reported metric) or "failed" (with the ``error`` line). ``fatal``: the same error would fail
    every trial (the summary has no such metric), so the sweep stops."""

    state: str
    value: Optional[float] = None
    error: str = ""
    fatal: bool = False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_trial(plan: Plan, trial: Any) -> Outcome:
    """Run Optuna ``trial`` of ``plan`` to its end, pruned end or failure; return how it ended."""
    import optuna

    values = {param.key: param.suggest(trial) for param in plan.params}
    trial_dir = plan.trial_dir(trial.number)
    if trial_dir.exists():  # left by an interrupted sweep, or an older study in this run_dir: trial numbers are ours
        shutil.rmtree(trial_dir)
    trial_dir.mkdir(parents=True)
    trial.set_user_attr(RUN_DIR_ATTR, str(trial_dir))
    metric, steps, reported = plan.cfg.metric, [0], [None]

    def on_step(step: int, record: dict[str, Any]) -> None:
        steps[0] = step
        value = record.get(metric)
        if _number(value):
            reported[0] = float(value)
            trial.report(float(value), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {value:.4g} at step {step}")

    with open(trial_dir / "train.log", "w", encoding="utf-8") as log:
        try:
            cfg = plan.build(values, trial_dir)
            save_config(cfg, trial_dir / TRIAL_CONFIG)
            trial.set_user_attr(CONFIG_ATTR, str(trial_dir / TRIAL_CONFIG))
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                summary = plan.command.run_fn()(cfg, on_step)
        except optuna.TrialPruned as pruned:
            log.write(f"pruned: {pruned}\n")
            trial.set_user_attr(STEPS_ATTR, steps[0])
            return Outcome("pruned", reported[0])
        except LmforgeError as err:
            message = " ".join(str(err).split())
            log.write(f"failed: {message}\n")
            trial.set_user_attr(STEPS_ATTR, steps[0])
            trial.set_user_attr(ERROR_ATTR, message)
            return Outcome("failed", error=message)
    trial.set_user_attr(STEPS_ATTR, int(summary.get("steps", steps[0])))
    trial.set_user_attr(SUMMARY_ATTR, {k: v for k, v in summary.items() if _number(v) and math.isfinite(v)})
    value = summary.get(metric)
    if not _number(value):
        numbers = sorted(k for k, v in summary.items() if _number(v))
        message = (f"config key 'metric': the {plan.cfg.command} summary has no number {metric!r}; "
                   f"it has {', '.join(numbers)}")
        trial.set_user_attr(ERROR_ATTR, message)
        return Outcome("failed", error=message, fatal=True)
    if not math.isfinite(value):
        message = f"{metric} is {value} at the end of the run"
        trial.set_user_attr(ERROR_ATTR, message)
        return Outcome("failed", error=message)
    return Outcome("complete", float(value))
