"""Cut a pipeline's step list into stages at every corpus-wide step (dedup).

Stage k reads its shard (the source for stage 0, the previous stage's output otherwise),
applies the decisions of the corpus step that ended stage k-1, runs the document steps up
to the next corpus step, and computes that step's fingerprints. Between stages the driver
runs the corpus step's ``decide`` once over all fingerprints. With no corpus step, the
whole pipeline is a single stage and shards never wait for each other.

    steps:   clean  gopher  [minhash]  pii  [line_dedup]  c4
    stage 0: clean  gopher  fingerprint(minhash)
    stage 1: apply(minhash)  pii  fingerprint(line_dedup)
    stage 2: apply(line_dedup)  c4  -> output shards
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import yaml

from lmforge.data.steps import CorpusStep, Step, build_step
from lmforge.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    index: int
    apply: Optional[int]          # corpus step whose decisions this stage applies first
    doc_steps: tuple[int, ...]    # document steps, in order
    fingerprint: Optional[int]    # corpus step whose fingerprints this stage computes last

    @property
    def is_last(self) -> bool:
        return self.fingerprint is None


def build_steps(entries: list[Any]) -> list[Step]:
    """The steps of a pipeline's ``steps`` list. From the command line each step comes as YAML
    text (``--steps '{step: clean}' '{step: pii}'``, or one ``'[{step: clean}, ...]'``)."""
    entries = [parsed for entry in entries for parsed in _from_cli(entry)]
    if not entries:
        raise ConfigError("config key 'steps': the pipeline has no steps; add at least one "
                          "(`lmforge data steps` lists them)")
    return [build_step(entry, i) for i, entry in enumerate(entries)]


def _from_cli(entry: Any) -> list[Any]:
    if not isinstance(entry, str):
        return [entry]
    try:
        parsed = yaml.safe_load(entry)
    except yaml.YAMLError:
        return [entry]  # build_step names the bad entry
    return parsed if isinstance(parsed, list) else [parsed]


def plan_stages(steps: list[Step]) -> list[Stage]:
    stages: list[Stage] = []
    apply: Optional[int] = None
    doc_steps: list[int] = []
    for i, step in enumerate(steps):
        if isinstance(step, CorpusStep):
            stages.append(Stage(len(stages), apply, tuple(doc_steps), i))
            apply, doc_steps = i, []
        else:
            doc_steps.append(i)
    stages.append(Stage(len(stages), apply, tuple(doc_steps), None))
    return stages
