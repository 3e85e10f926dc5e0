"""The books of a pipeline run: per-step counts and length histograms, mergeable across shards.

Every shard worker returns a ``ShardStats``; the driver adds them up into ``stats.json``.
The invariant that proves nothing was lost (docs/architecture.md, 'Documents and counts')
is checked at the end:
``read == kept + sum(dropped by step and reason) + sum(failed by reason)``, where ``failed``
are the items a reader could not turn into documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Document lengths are binned by powers of two of their character count: bin b holds lengths
# in [2^b - 1, 2^(b+1) - 1). 40 bins reach past a terabyte, so nothing falls outside.
NUM_LENGTH_BINS = 40
MAX_EXAMPLES = 20


def length_bin(num_chars: int) -> int:
    return min((num_chars + 1).bit_length() - 1, NUM_LENGTH_BINS - 1)


def _add_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


def _add_lists(into: list[int], other: list[int]) -> None:
    for i, n in enumerate(other):
        into[i] += n


@dataclass
class StepStats:
    """What one step did: documents in, kept, dropped by reason, and kept-but-changed."""

    index: int
    name: str
    docs_in: int = 0
    kept: int = 0
    changed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_lengths: list[int] = field(default_factory=lambda: [0] * NUM_LENGTH_BINS)
    examples: list[dict[str, str]] = field(default_factory=list)

    def record_drop(self, doc_id: str, num_chars: int, reason: str, detail: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.dropped_lengths[length_bin(num_chars)] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"id": doc_id, "reason": reason, "detail": detail})

    def merge(self, other: "StepStats") -> None:
        self.docs_in += other.docs_in
        self.kept += other.kept
        self.changed += other.changed
        _add_counts(self.dropped, other.dropped)
        _add_lists(self.dropped_lengths, other.dropped_lengths)
        self.examples.extend(other.examples[: max(0, MAX_EXAMPLES - len(self.examples))])

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "step": self.name, "in": self.docs_in, "kept": self.kept,
                "changed": self.changed, "dropped": dict(sorted(self.dropped.items())),
                "dropped_lengths": self.dropped_lengths, "examples": self.examples}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepStats":
        return cls(d["index"], d["step"], d["in"], d["kept"], d["changed"], dict(d["dropped"]),
                   list(d["dropped_lengths"]), list(d["examples"]))


@dataclass
class ShardStats:
    """One shard's part of one stage. Only stage 0 reads the source, so only it has ``read``."""

    read: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    failed_examples: list[dict[str, str]] = field(default_factory=list)
    steps: list[StepStats] = field(default_factory=list)
    read_lengths: list[int] = field(default_factory=lambda: [0] * NUM_LENGTH_BINS)
    kept_lengths: list[int] = field(default_factory=lambda: [0] * NUM_LENGTH_BINS)
    output: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {docs, chars}

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "failed": self.failed, "failed_examples": self.failed_examples,
                "steps": [s.to_dict() for s in self.steps], "read_lengths": self.read_lengths,
                "kept_lengths": self.kept_lengths, "output": self.output}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShardStats":
        return cls(d["read"], dict(d["failed"]), list(d["failed_examples"]),
                   [StepStats.from_dict(s) for s in d["steps"]], list(d["read_lengths"]),
                   list(d["kept_lengths"]), {k: dict(v) for k, v in d["output"].items()})


def merge_run_stats(step_names: list[str], shards: list[ShardStats]) -> dict[str, Any]:
    """Add up every shard of every stage into the ``stats.json`` of the run."""
    steps = [StepStats(i, name) for i, name in enumerate(step_names)]
    total = ShardStats()
    for shard in shards:
        total.read += shard.read
        _add_counts(total.failed, shard.failed)
        total.failed_examples.extend(shard.failed_examples[: max(0, MAX_EXAMPLES - len(total.failed_examples))])
        _add_lists(total.read_lengths, shard.read_lengths)
        _add_lists(total.kept_lengths, shard.kept_lengths)
        for split, counts in shard.output.items():
            _add_counts(total.output.setdefault(split, {}), counts)
        for step in shard.steps:
            steps[step.index].merge(step)
    kept = sum(c.get("docs", 0) for c in total.output.values())
    num_dropped = sum(sum(s.dropped.values()) for s in steps)
    num_failed = sum(total.failed.values())
    return {
        "read": total.read,
        "kept": kept,
        "dropped": num_dropped,
        "failed": num_failed,
        "balanced": total.read == kept + num_dropped + num_failed,
        "failed_by_reason": dict(sorted(total.failed.items())),
        "failed_examples": total.failed_examples,
        "steps": [s.to_dict() for s in steps],
        "output": total.output,
        "length_bins": "bin b holds documents of 2^b - 1 to 2^(b+1) - 2 characters",
        "read_lengths": total.read_lengths,
        "kept_lengths": total.kept_lengths,
    }
