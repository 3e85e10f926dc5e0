"""What a sweep leaves behind: the trials as a table (CSV and Markdown), the best trial's full
config, and a plot of the metric per trial.

- ``results.csv`` / ``results.md``: one row per trial: number, state (complete, pruned, failed,
  interrupted), the metric (for a pruned trial, its last periodic value), each searched key,
  the optimiser steps it reached, its duration and, for a failed trial, the error.
- ``best_config.yaml``: the best complete trial's command config (recipe + overrides + its
  values) with ``train.run_dir`` = RUN_DIR/best, so ``lmforge pretrain --config
  RUN_DIR/best_config.yaml`` trains it again in a fresh directory.
- ``trials.png``: the metric of each trial by trial number: complete trials as dots, pruned
  ones as crosses at their last periodic value, failed ones as marks along the bottom, and the
  best value so far as a step line.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional

from lmforge.config import save_config
from lmforge.errors import DataError
from lmforge.sweep.plan import Plan
from lmforge.sweep.study import INTERRUPTED_ATTR, counts
from lmforge.sweep.trial import ERROR_ATTR, STEPS_ATTR

RESULTS_CSV, RESULTS_MD, BEST_CONFIG, PLOT = "results.csv", "results.md", "best_config.yaml", "trials.png"


def trial_rows(study: Any, plan: Plan) -> list[dict[str, Any]]:
    """One dict per trial, in trial order: number, state, value, params (decoded), steps, seconds, error."""
    from optuna.trial import TrialState

    interrupted = set(study.user_attrs.get(INTERRUPTED_ATTR, []))
    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
              TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        state = "interrupted" if trial.number in interrupted else states[trial.state]
        value: Optional[float] = trial.value if trial.state == TrialState.COMPLETE else None
        if trial.state == TrialState.PRUNED and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        params = {}
        for key, raw in trial.params.items():
            param = plan.param(key)
            params[key] = param.decode(raw) if param is not None else raw
        rows.append({"number": trial.number, "state": state, "value": value, "params": params,
                     "steps": trial.user_attrs.get(STEPS_ATTR),
                     "seconds": trial.duration.total_seconds() if trial.duration is not None else None,
                     "error": trial.user_attrs.get(ERROR_ATTR, "")})
    return rows


def best_row(rows: list[dict[str, Any]], direction: str) -> Optional[dict[str, Any]]:
    complete = [r for r in rows if r["state"] == "complete"]
    if not complete:
        return None
    pick = min if direction == "minimize" else max
    return pick(complete, key=lambda r: (r["value"], -r["number"]) if direction == "maximize" else
                (r["value"], r["number"]))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def write_csv(rows: list[dict[str, Any]], plan: Plan, path: Path) -> None:
    keys = [p.key for p in plan.params]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "state", plan.cfg.metric, *keys, "steps", "seconds", "error"])
        for r in rows:
            writer.writerow([r["number"], r["state"], _cell(r["value"]), *(_cell(r["params"].get(k)) for k in keys),
                             _cell(r["steps"]), _cell(r["seconds"] and round(r["seconds"], 2)), r["error"]])


def markdown_table(rows: list[dict[str, Any]], plan: Plan, best: Optional[dict[str, Any]]) -> str:
    keys = [p.key for p in plan.params]
    header = ["trial", "state", plan.cfg.metric, *keys, "steps", "seconds", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        note = "best" if best is not None and r["number"] == best["number"] else r["error"].replace("|", "\\|")
        seconds = f"{r['seconds']:.1f}" if r["seconds"] is not None else ""
        value = f"{r['value']:.4f}" if r["value"] is not None else ""
        cells = [str(r["number"]), r["state"], value, *(_cell(r["params"].get(k)) for k in keys),
                 _cell(r["steps"]), seconds, note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plot(rows: list[dict[str, Any]], plan: Plan, path: Path) -> None:
    """The PNG described in the module docstring (matplotlib, Agg backend: no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise DataError("the sweep's plot needs matplotlib: pip install 'lmforge[finetune]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for state, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:orange")):
        points = [(r["number"], r["value"]) for r in rows if r["state"] == state and r["value"] is not None
                  and math.isfinite(r["value"])]
        if points:
            label = f"{state} ({len(points)})" + (": last periodic value" if state == "pruned" else "")
            ax.scatter(*zip(*points), marker=marker, color=color, label=label, zorder=3)
    better = min if plan.cfg.direction == "minimize" else max
    best_x, best_y, best = [], [], None
    for r in rows:
        if r["state"] == "complete":
            best = r["value"] if best is None else better(best, r["value"])
        if best is not None:
            best_x.append(r["number"])
            best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color="tab:green", label="best so far", zorder=2)
    failed = [r["number"] for r in rows if r["state"] in ("failed", "interrupted")]
    if failed:
        ax.plot(failed, [0.02] * len(failed), "v", color="tab:red", transform=ax.get_xaxis_transform(),
                label=f"failed ({len(failed)})", clip_on=False)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(plan.cfg.metric + (" (lower is better)" if plan.cfg.direction == "minimize" else
                                     " (higher is better)"))
    ax.set_title(f"study {plan.cfg.study_name!r}: {plan.cfg.command}, {len(rows)} trials")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def write_report(study: Any, plan: Plan) -> dict[str, Any]:
    """Write the four files, print the table, and return the sweep's summary (the JSON line)."""
    rows = trial_rows(study, plan)
    best = best_row(rows, plan.cfg.direction)
    run_dir = plan.run_dir
    write_csv(rows, plan, run_dir / RESULTS_CSV)
    table = markdown_table(rows, plan, best)
    best_path = run_dir / BEST_CONFIG
    if best is not None:
        save_config(plan.build(best["params"], run_dir / "best"), best_path)
    elif best_path.exists():
        best_path.unlink()  # from an earlier study in this directory: not this one's
    headline = (f"best: trial {best['number']}, {plan.cfg.metric} {best['value']:.4f}" if best is not None
                else "no trial completed")
    (run_dir / RESULTS_MD).write_text(f"# Sweep {plan.cfg.study_name}\n\n{plan.cfg.command}, {plan.cfg.direction} "
                                      f"{plan.cfg.metric}; {headline}.\n\n{table}\n", encoding="utf-8")
    write_plot(rows, plan, run_dir / PLOT)
    c = counts(study)
    summary = {"best_value": best["value"] if best else None, "best_trial": best["number"] if best else None,
               "best_params": best["params"] if best else {},
               "trials": {"complete": c["complete"], "pruned": c["pruned"], "failed": c["failed"]},
               "metric": plan.cfg.metric, "direction": plan.cfg.direction,
               "best_config": str(best_path) if best else None, "results": str(run_dir / RESULTS_MD),
               "plot": str(run_dir / PLOT), "storage": plan.storage, "study_name": plan.cfg.study_name}
    print(table)
    print(headline)
    print(json.dumps(summary))
    return summary
