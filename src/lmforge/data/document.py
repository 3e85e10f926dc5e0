"""The unit every data step passes along: a document, plus the counts that prove nothing was lost.

A reader yields ``Document``s; anything it cannot turn into a document becomes a
``BadDocument`` carrying a reason code (``not_utf8``, ``bad_json``, ...) and a one-line
message that names the file (and line). ``ReadStats`` keeps the books so every run can
report ``read = kept + sum(skipped by reason)`` (docs/architecture.md, 'Documents and
counts').
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

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

    ``message`` is a full sentence naming the file (and line) and what is wrong, without the
    ``on_error`` hint, which the caller adds when it raises. Where the fix is one of the
    command's source options, ``fix`` names that field (``"paths"``: remove the file from the
    input; ``"text_field"``: name another field) and the caller adds the hint in the spelling of
    its command (``SourceOptions``): ``prepare`` says --source.paths, ``data run``
    --input.paths, ``evaluate`` --data.
    """

    id: str
    reason: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class SourceOptions:
    """How the command that reads a source spells its options in error messages.

    ``prepare`` reads ``--source.*``, ``data run`` ``--input.*`` (``SourceOptions.section``);
    ``evaluate`` and ``tokenizer`` read one file named by an option of their own and have no
    kind, text_field or on_error option (``SourceOptions.one_file``): None leaves that hint out.
    """

    paths: str = "--source.paths"
    kind: Optional[str] = "--source.kind"
    text_field: Optional[str] = "--source.text_field"
    on_error: Optional[str] = "--source.on_error"
    one_file: bool = False

    @classmethod
    def section(cls, name: str) -> "SourceOptions":
        """The options of a config section ``name`` of type SourceConfig (``input`` -> --input.paths)."""
        return cls(f"--{name}.paths", f"--{name}.kind", f"--{name}.text_field", f"--{name}.on_error")

    @classmethod
    def single(cls, option: str) -> "SourceOptions":
        """A command that reads the one file given by ``option`` (``--data``, ``--input``)."""
        return cls(option, None, None, None, one_file=True)

    def hint(self, fix: str) -> str:
        """What to do about a ``BadDocument`` whose ``fix`` is ``fix`` ('' when there is nothing to add)."""
        if fix == "paths":
            return f"pass another file to {self.paths}" if self.one_file else f"remove it from {self.paths}"
        if fix == "text_field" and self.text_field:
            return f"pass {self.text_field} NAME"
        return ""

    def kind_is(self, kind: str) -> str:
        """``source.kind=text`` as the command spells it."""
        return f"{self.kind.removeprefix('--')}={kind}" if self.kind else f"a {kind} source"


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
