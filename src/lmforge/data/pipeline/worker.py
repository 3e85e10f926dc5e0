"""One shard through one stage: the function every executor (local pool, Ray) runs.

A task is plain data (the run's config as a dict, stage and shard numbers), so it pickles
to any worker process or Ray node; the worker rebuilds the steps from the config itself.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lmforge.config import DataRunConfig, _build
from lmforge.data.docfile import AtomicJsonlWriter, read_document_file, tmp_sibling, write_json
from lmforge.data.document import Document, ReadStats, SourceOptions
from lmforge.data.pipeline.output import SPLITS, RejectsWriter, open_split_writer, part_name, stage_dir
from lmforge.data.pipeline.plan import build_steps, plan_stages
from lmforge.data.pipeline.stats import ShardStats, StepStats, length_bin
from lmforge.data.prepare import split_fraction
from lmforge.data.steps import CorpusStep, DocRef, DocStep, Drop

# A pipeline's source section is called input: its errors say --input.paths, --input.on_error, ...
INPUT_OPTIONS = SourceOptions.section("input")


@dataclass(frozen=True)
class ShardTask:
    config: dict[str, Any]
    stage: int
    shard: int
    shard_name: str


def marker_path(out_dir: str, stage: int, shard: int) -> str:
    return os.path.join(stage_dir(out_dir, stage), part_name(shard) + ".done.json")


def docs_path(out_dir: str, stage: int, shard: int) -> str:
    return os.path.join(stage_dir(out_dir, stage), part_name(shard) + ".jsonl")


def fingerprints_path(out_dir: str, stage: int, shard: int) -> str:
    return os.path.join(stage_dir(out_dir, stage), part_name(shard) + ".fingerprints.pkl")


def decisions_path(out_dir: str, stage: int, shard: int) -> str:
    """Decisions of the corpus step that ended ``stage``, for one shard."""
    return os.path.join(stage_dir(out_dir, stage), part_name(shard) + ".decisions.pkl")


def write_pickle(path: str, obj: Any) -> None:
    tmp = tmp_sibling(path)
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def read_pickle(path: str) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def run_shard(task: ShardTask) -> dict[str, Any]:
    """Run one shard through one stage; write its outputs and marker; return its stats."""
    from lmforge.data.sources import read_shard  # readers import optional extras lazily

    cfg: DataRunConfig = _build(DataRunConfig, task.config)
    out_dir = cfg.output.dir
    steps = build_steps(cfg.steps)
    stage = plan_stages(steps)[task.stage]
    indices = _step_indices(stage)
    stats = ShardStats(steps=[StepStats(i, steps[i].name) for i in indices])
    by_index = {s.index: s for s in stats.steps}

    read_stats = ReadStats()
    if task.stage == 0:
        docs: Iterator[Document] = read_shard(cfg.input, task.shard_name, read_stats, INPUT_OPTIONS)
    else:
        docs = read_document_file(docs_path(out_dir, task.stage - 1, task.shard))
    decisions: dict[int, Any] = {}
    if stage.apply is not None:
        decisions = read_pickle(decisions_path(out_dir, task.stage - 1, task.shard))

    os.makedirs(stage_dir(out_dir, task.stage), exist_ok=True)
    rejects = RejectsWriter(out_dir, task.shard, task.stage, cfg.output.write_rejects)
    if stage.is_last:
        writers = {s: open_split_writer(out_dir, s, task.shard, cfg.output.format) for s in SPLITS}
        stats.output = {s: {"docs": 0, "chars": 0} for s in SPLITS}
    else:
        writers = {"next": AtomicJsonlWriter(docs_path(out_dir, task.stage, task.shard))}
    fingerprints: list[Any] = []
    try:
        for position, doc in enumerate(docs):
            if task.stage == 0:
                stats.read_lengths[length_bin(len(doc.text))] += 1
            kept = _run_steps(doc, position, indices, steps, decisions, by_index, rejects)
            if kept is None:
                continue
            if stage.fingerprint is not None:
                step = steps[stage.fingerprint]
                assert isinstance(step, CorpusStep)
                fingerprints.append(step.fingerprint(kept))
                writers["next"].write(kept)
                continue
            split = "val" if split_fraction(cfg.output.split_seed, kept.text) < cfg.output.val_fraction else "train"
            writers[split].write(kept)
            stats.output[split]["docs"] += 1
            stats.output[split]["chars"] += len(kept.text)
            stats.kept_lengths[length_bin(len(kept.text))] += 1
        if stage.fingerprint is not None:
            write_pickle(fingerprints_path(out_dir, task.stage, task.shard), fingerprints)
        for name, writer in writers.items():
            # No empty output parts: readers (`lmforge prepare`) rightly count an empty file as bad input.
            if name == "next" or stats.output[name]["docs"]:
                writer.commit()
        rejects.commit()
    finally:
        for writer in writers.values():
            writer.discard()
        rejects.discard()
    if task.stage == 0:
        stats.read = read_stats.read
        stats.failed = dict(read_stats.skipped)
        stats.failed_examples = [{"id": i, "reason": r} for i, r in read_stats.skipped_examples[:20]]
    result = stats.to_dict()
    write_json(marker_path(out_dir, task.stage, task.shard), result)
    return result


def _step_indices(stage) -> list[int]:
    return ([stage.apply] if stage.apply is not None else []) + list(stage.doc_steps)


def _run_steps(doc: Document, position: int, indices: list[int], steps, decisions, by_index,
               rejects) -> Document | None:
    """Pass one document through the stage's steps; None when a step dropped it."""
    for index in indices:
        step = steps[index]
        step_stats = by_index[index]
        step_stats.docs_in += 1
        if isinstance(step, DocStep):
            result = step(doc)
        elif position in decisions:
            result = step.apply(doc, decisions[position])
        else:
            result = doc
        if isinstance(result, Drop):
            step_stats.record_drop(doc.id, len(doc.text), result.reason, result.detail)
            rejects.write(doc, index, step.name, result.reason, result.detail)
            return None
        step_stats.kept += 1
        if result.text != doc.text:
            step_stats.changed += 1
        doc = result
    return doc


def corpus_fingerprints(out_dir: str, stage: int, num_shards: int) -> Iterator[tuple[DocRef, Any]]:
    """Every fingerprint of ``stage`` in corpus order (shard, then position): the input of decide."""
    for shard in range(num_shards):
        for position, fp in enumerate(read_pickle(fingerprints_path(out_dir, stage, shard))):
            yield DocRef(shard, position), fp
