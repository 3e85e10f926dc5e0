"""The unit every data step passes along: a document, plus the counts that prove nothing was lost.

A reader yields ``Document``s; anything it cannot turn into a document becomes a
``BadDocument`` carrying a reason code (``not_utf8``, ``bad_json``, ...) and a one-line
message that names the file (and line). ``ReadStats`` keeps the books so every run can
report ``read = kept + sum(skipped by reason)`` (docs/architecture.md, 'Documents and
counts').
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Counting never stops, but a corpus with millions of bad lines must not fill memory
# (or stats.json) with their ids: only the first few are recorded as examples.
MAX_RECORDED_SKIPS = 1000


@dataclass
class Document:
    """One text with a stable id and its provenance (``meta["source"]`` is the file it came from)."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class BadDocument:
    """Something a reader could not turn into a document.

    ``message`` is a full sentence naming the file (and line) and what to fix, without the
    ``on_error`` hint, which the caller adds when it raises.
    """

    id: str
    reason: str
    message: str


@dataclass
class ReadStats:
    """Counts of one read: ``read == kept + sum(skipped.values())`` once the read has finished."""

    read: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: list[tuple[str, str]] = field(default_factory=list)

    def record_skip(self, doc_id: str, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.skipped_examples) < MAX_RECORDED_SKIPS:
            self.skipped_examples.append((doc_id, reason))

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_examples": [{"id": i, "reason": r} for i, r in self.skipped_examples],
        }
