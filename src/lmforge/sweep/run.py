"""`lmforge sweep`: check the sweep, take its directory, run the missing trials, write the report."""

from __future__ import annotations

from typing import Any

from lmforge.errors import ConfigError, LmforgeError, TrainingError
from lmforge.sweep.config import SweepConfig
from lmforge.sweep.plan import make_plan
from lmforge.sweep.report import write_report
from lmforge.sweep.study import (available_cores, check_signature, finished, mark_interrupted, open_study,
                                 require_optuna, run_workers, work)


def run_sweep(cfg: SweepConfig) -> dict[str, Any]:
    """Run ``cfg``'s study to ``cfg.trials`` finished trials (continuing the one in its storage),
    write RUN_DIR/results.csv, results.md, best_config.yaml and trials.png, and return the summary
    ({best_value, best_params, trials: {complete, pruned, failed}, ...}). Raises TrainingError
    when no trial completed (after writing the report, which lists each trial's error)."""
    from lmforge.train.run_lock import RunLock

    require_optuna()
    plan = make_plan(cfg)  # every ConfigError of the space and the base config comes before any work
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = RunLock(plan.run_dir).acquire()
    except ConfigError:
        raise ConfigError(f"sweep directory '{plan.run_dir}' is in use by another sweep: wait for it to finish, "
                          "stop it, or pass another --run_dir") from None
    try:
        study = open_study(plan)
        check_signature(study, plan)
        stale = mark_interrupted(study)
        done = finished(study)
        missing = max(cfg.trials - done, 0)
        workers = min(cfg.parallel, missing)
        note = f" ({len(stale)} interrupted trial(s) will be run again)" if stale else ""
        print(f"study {cfg.study_name!r} in {plan.storage}: {done} of {cfg.trials} trials finished{note}; "
              f"running {missing}" + (f" in {workers} processes ({max(1, available_cores() // workers)} "
                                      "torch threads each)" if workers > 1 else ""), flush=True)
        try:
            if workers > 1:
                run_workers(plan, workers)
            elif missing:
                work(plan)
        except LmforgeError:
            write_report(open_study(plan), plan)  # the trials so far, each failed one with its error
            raise
        summary = write_report(open_study(plan), plan)
    finally:
        lock.release()
    if summary["best_value"] is None and summary["trials"]["failed"]:
        raise TrainingError(f"no trial of the sweep completed ({summary['trials']['pruned']} pruned, "
                            f"{summary['trials']['failed']} failed): see the errors in {summary['results']}")
    return summary

