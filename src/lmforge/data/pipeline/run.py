"""`lmforge data run PIPELINE.yaml`: the driver of a pipeline run.

It lists the input shards (one per input file), plans the stages (see ``plan.py``), runs
each stage's shards on the executor, runs every corpus step's ``decide`` between stages,
and merges the shards' books into ``stats.json``. Completion markers make a rerun skip
the shards (and decisions) that are already done; a rerun with a different pipeline in the
same output directory is refused, because its markers would describe other work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections import defaultdict
from typing import Any

from lmforge.config import DataRunConfig
from lmforge.data.docfile import write_json
from lmforge.data.pipeline.executors import LocalExecutor, RayExecutor
from lmforge.data.pipeline.output import stage_dir
from lmforge.data.pipeline.plan import build_steps, plan_stages
from lmforge.data.pipeline.stats import ShardStats, merge_run_stats
from lmforge.data.pipeline.worker import (INPUT_OPTIONS, ShardTask, corpus_fingerprints, decisions_path, docs_path,
                                          fingerprints_path, marker_path, run_shard, write_pickle)
from lmforge.data.sources import source_shards
from lmforge.data.steps import CorpusStep
from lmforge.errors import ConfigError, DataError

# Keys that change how a run is executed but not what it produces: a rerun may change them.
_EXECUTION_KEYS = ("executor", "workers", "ray_address")


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _EXECUTION_KEYS}


def _claim_output_dir(out_dir: str, config: dict[str, Any]) -> None:
    work = os.path.join(out_dir, ".work")
    record = os.path.join(work, "pipeline.json")
    if os.path.exists(record):
        with open(record, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != _identity(config):
            raise ConfigError(f"output.dir '{out_dir}' holds a run of a different pipeline: "
                              f"choose another --output.dir, or delete it to start over")
        return
    if os.path.isdir(out_dir) and any(os.scandir(out_dir)):
        raise ConfigError(f"output.dir '{out_dir}' exists and is not a pipeline output: "
                          f"choose another --output.dir")
    os.makedirs(work, exist_ok=True)
    write_json(record, _identity(config))


def run_pipeline(cfg: DataRunConfig) -> dict[str, Any]:
    """Run ``cfg`` end to end (or finish an interrupted run); return and write ``stats.json``."""
    if not 0.0 <= cfg.output.val_fraction < 1.0:
        raise ConfigError(f"config key 'output.val_fraction': expected a number in [0, 1), "
                          f"got {cfg.output.val_fraction}")
    if cfg.workers < 0:
        raise ConfigError(f"config key 'workers': expected 0 (one per core) or more, got {cfg.workers}")
    steps = build_steps(cfg.steps)  # validates every step's options before any work starts
    stages = plan_stages(steps)
    shards = source_shards(cfg.input, INPUT_OPTIONS)
    if not shards:
        raise DataError("the input has no files: check input.kind and input.paths")
    config = dataclasses.asdict(cfg)
    out_dir = cfg.output.dir
    _claim_output_dir(out_dir, config)

    executor = RayExecutor(cfg.ray_address, cfg.workers) if cfg.executor == "ray" else LocalExecutor(cfg.workers)
    shard_stats: list[ShardStats] = []
    try:
        for stage in stages:
            tasks = [ShardTask(config, stage.index, i, name) for i, name in enumerate(shards)
                     if not os.path.exists(marker_path(out_dir, stage.index, i))]
            label = f"stage {stage.index + 1}/{len(stages)}"
            if tasks:
                executor.run(run_shard, tasks, label)
            for i in range(len(shards)):
                with open(marker_path(out_dir, stage.index, i), encoding="utf-8") as f:
                    shard_stats.append(ShardStats.from_dict(json.load(f)))
            if stage.fingerprint is not None:
                _decide(steps[stage.fingerprint], out_dir, stage.index, len(shards))
            if stage.index > 0:
                _drop_stage_files(out_dir, stage.index - 1, len(shards))
    finally:
        executor.close()

    stats = merge_run_stats([s.name for s in steps], shard_stats)
    stats = {"input": {"kind": cfg.input.kind, "paths": list(cfg.input.paths), "shards": len(shards)},
             "output": {"dir": out_dir, "format": cfg.output.format, "val_fraction": cfg.output.val_fraction,
                        "split_seed": cfg.output.split_seed, **stats.pop("output")},
             **stats}
    write_json(os.path.join(out_dir, "stats.json"), stats)
    if not stats["balanced"]:  # a bug, not a user mistake: the books must balance
        raise AssertionError(f"pipeline books do not balance: {stats['read']} read != {stats['kept']} kept "
                             f"+ {stats['dropped']} dropped + {stats['failed']} failed")
    return stats


def _decide(step: Any, out_dir: str, stage: int, num_shards: int) -> None:
    """Run a corpus step's decide once over all shards; split its decisions per shard."""
    assert isinstance(step, CorpusStep)
    done = os.path.join(stage_dir(out_dir, stage), "decided.json")
    if os.path.exists(done):
        return
    decisions = step.decide(corpus_fingerprints(out_dir, stage, num_shards))
    per_shard: dict[int, dict[int, Any]] = defaultdict(dict)
    for ref, decision in decisions.items():
        per_shard[ref.shard][ref.position] = decision
    for shard in range(num_shards):
        write_pickle(decisions_path(out_dir, stage, shard), per_shard.get(shard, {}))
    write_json(done, {"step": step.name, "decisions": len(decisions)})
    print(f"{step.name}: decided over all shards ({len(decisions)} documents affected)", file=sys.stderr)


def _drop_stage_files(out_dir: str, stage: int, num_shards: int) -> None:
    """The next stage is complete: the big intermediate files of ``stage`` are no longer needed."""
    for shard in range(num_shards):
        for path in (docs_path(out_dir, stage, shard), fingerprints_path(out_dir, stage, shard),
                     decisions_path(out_dir, stage, shard)):
            if os.path.exists(path):
                os.remove(path)


__all__ = ["run_pipeline"]
