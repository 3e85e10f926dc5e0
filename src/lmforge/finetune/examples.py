"""Labelled examples from JSONL files, with line-numbered errors and counted skips.

Fine-tuning data is one JSON object per line (``{"prompt": ..., "response": ...}``,
``{"text": ..., "label": ...}``, ...). Every problem with a line (not JSON, not an object, a
field missing or of the wrong type, and later the task's own checks: roles out of order, a
label outside the label set, too long for the context) is either one `DataError` line naming
``file:line`` and what to do (``on_bad_example: error``, the default) or, with
``on_bad_example: skip``, the example is dropped and counted by reason; the counts travel
with the data (`Skips`) and the run prints them (`TaskData.describe`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from lmforge.errors import DataError

OnBad = Literal["error", "skip"]
ON_BAD_HELP = ("a bad example (malformed JSON, missing or mistyped field, and the task's own checks): "
               "error (one line naming file:line) or skip (dropped and counted by reason)")


class BadExample(Exception):
    """Raised by a task's check of one example: ``reason`` is the short key skips are counted
    under, ``message`` says what is wrong and what to do (without the file:line, added later)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Skips:
    """Examples dropped under ``on_bad_example: skip`` (or ``too_long: skip``), by reason."""

    counts: Counter = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)  # reason -> "file:line: message" of its first case

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: str, where: str, message: str) -> None:
        self.counts[reason] += 1
        self.first.setdefault(reason, f"{where}: {message}")

    def describe(self) -> str:
        """``skipped 3 (2 bad_json, 1 too_long)``, or "" when nothing was skipped."""
        if not self.total:
            return ""
        parts = ", ".join(f"{count} {reason}" for reason, count in sorted(self.counts.items()))
        return f"skipped {self.total} ({parts})"


@dataclass(frozen=True)
class Example:
    """One JSON object of a file and where it came from (for error messages)."""

    path: str
    line: int  # 1-based
    record: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


class ExampleReader:
    """Reads one JSONL file and applies ``on_bad`` to its bad lines.

    ``reject(where, bad)`` is the single place a bad example turns into an error or a counted
    skip, so the task's later checks (roles, labels, length) behave exactly like the reader's.
    """

    def __init__(self, on_bad: OnBad, skips: Skips, option_key: str = "task.options.on_bad_example") -> None:
        self.on_bad, self.skips, self.option_key = on_bad, skips, option_key

    def reject(self, where: str, bad: BadExample, *, skip: bool | None = None) -> None:
        """Raise the DataError for ``bad`` at ``where``, or count it when skipping (``skip``
        overrides ``on_bad``: the too_long option has its own choice)."""
        skipping = self.on_bad == "skip" if skip is None else skip
        if not skipping:
            hint = f" (or set {self.option_key}: skip to drop such examples)" if skip is None else ""
            raise DataError(f"{where}: {bad.message}{hint}")
        self.skips.add(bad.reason, where, bad.message)

    def read(self, path: str, fields: dict[str, type | tuple[type, ...]], key: str) -> Iterator[Example]:
        """The examples of ``path`` whose ``fields`` (name -> accepted type(s)) are present with
        the right types. ``key`` is the config key that named the file (for a missing file)."""
        file = Path(path)
        if not path or not file.is_file():
            raise DataError(f"config key '{key}': {'no file given' if not path else f'{path!r} is not a file'}; "
                            "pass a JSONL file of examples (one JSON object per line)")
        try:
            handle = file.open("r", encoding="utf-8")
        except OSError as err:
            raise DataError(f"config key '{key}': cannot read {path!r} ({err.strerror}); check the path "
                            "and its permissions") from err
        with handle:
            line_no = 0
            while True:
                try:
                    line = handle.readline()
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{line_no + 1}: not UTF-8 text ({err.reason}); save the file as "
                                    "UTF-8") from err
                if not line:
                    return
                line_no += 1
                if not line.strip():
                    continue  # blank lines (a trailing newline) are not examples
                where = f"{path}:{line_no}"
                try:
                    yield Example(path, line_no, check_fields(line, fields))
                except BadExample as bad:
                    self.reject(where, bad)


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object",
             bool: "true/false"}
    options = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in options)


def check_fields(line: str, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """The JSON object on ``line`` with ``fields`` checked; BadExample otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise BadExample("bad_json", f"not valid JSON ({err.msg} at column {err.colno}); write one JSON "
                                     "object per line") from err
    if not isinstance(record, dict):
        raise BadExample("bad_json", f"expected a JSON object, got {type(record).__name__}; write one JSON "
                                     f"object per line with the fields {', '.join(fields)}")
    return check_record(record, fields)


def check_record(record: dict[str, Any], fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """``record`` if it has ``fields`` (name -> accepted type(s)); BadExample otherwise."""
    for name, types in fields.items():
        if name not in record:
            raise BadExample("missing_field", f"no field {name!r} (has {', '.join(map(repr, record)) or 'none'}); "
                                              f"each example needs {', '.join(map(repr, fields))}")
        value = record[name]
        accepted = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
            raise BadExample("wrong_type", f"field {name!r} must be {_type_name(types)}, got "
                                           f"{type(value).__name__} {_short(value)}")
    return record


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def check_string_list(value: Any, name: str) -> list[str]:
    """``value`` as a list of strings; BadExample naming the field otherwise."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadExample("wrong_type", f"field {name!r} must be a list of strings, got {_short(value)}")
    return value
