"""The search space of a sweep: dotted config keys and the values each trial may give them.

In YAML::

    space:
      optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # a float field: uniform in log space
      optim.warmup_steps: {low: 0, high: 20, step: 5}      # an int field: 0, 5, 10, 15, 20
      optim.name: {choices: [adamw, lamb]}                  # any field: one of these values

A range's type (float or int) is the config field's (``field_type``), so ``{low: 1, high: 4}``
on ``optim.lr`` draws floats and on ``model.num_layers`` integers. A key under a mapping field
(``task.options.mask_prob``, a task's or adapter's options) is a float range unless both bounds
(and the step) are integers; the task checks such values when a trial builds it. Each value of a
key is checked up front by building the command's config with it (``check_values``), so a bound
the field refuses fails the sweep at load time, not in its tenth trial.

Choices that are not plain scalars (a list of LoRA target modules) are handed to Optuna as their
JSON text, since its categorical parameters hold only None, bools, numbers and strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from lmforge.config import field_type, iter_fields
from lmforge.errors import ConfigError

RESERVED_KEYS = {"train.run_dir": "the sweep runs each trial in RUN_DIR/trial_NNNN: set the sweep's run_dir instead"}
RANGE_KEYS = {"low", "high", "log", "step"}
SCALARS = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (``low``..``high``, optionally log-scaled or on a
    ``step`` grid) or a list of ``choices``."""

    key: str
    kind: str  # "float", "int" or "choice"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: tuple = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this key's value for an Optuna ``trial`` (decoded: a JSON-encoded choice as its value)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return self.decode(trial.suggest_categorical(self.key, list(self.encoded_choices())))

    def encoded_choices(self) -> tuple:
        return tuple(c if isinstance(c, SCALARS) else json.dumps(c) for c in self.choices)

    def decode(self, value: Any) -> Any:
        """A stored parameter value as the config value it stands for."""
        if self.kind != "choice":
            return value
        for choice, encoded in zip(self.choices, self.encoded_choices()):
            if encoded == value and type(encoded) is type(value):
                return choice
        return value

    def values_to_check(self) -> list[tuple[str, Any]]:
        """(what, value) pairs that span the key's values: both bounds, or every choice."""
        if self.kind == "choice":
            return [(f"choice {index}", value) for index, value in enumerate(self.choices)]
        cast = int if self.kind == "int" else float
        return [("low", cast(self.low)), ("high", cast(self.high))]

    def as_dict(self) -> dict[str, Any]:
        """The normalised spec (what a study stores to notice a changed space on resume)."""
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log, "step": self.step}

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(json.dumps(c) for c in self.choices)
        grid = f" step {self.step:g}" if self.step else ""
        return f"{self.kind} {self.low:g}..{self.high:g}{' log' if self.log else ''}{grid}"


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_mapping_type(tp: Any) -> bool:
    tp = _strip_optional(tp)
    return tp is dict or typing.get_origin(tp) is dict


def leaf_type(cls: type, key: str) -> tuple[str, Any]:
    """How ``key`` sits in config class ``cls``: ("field", its type), ("mapping", None) for a key
    under a mapping field (``task.options.x``), or ("missing"/"section", None)."""
    tp = field_type(cls, key)
    if tp is not None:
        return ("section", None) if dataclasses.is_dataclass(tp) else ("field", tp)
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        if _is_mapping_type(field_type(cls, ".".join(parts[:end]))):
            return "mapping", None
    return "missing", None


def check_key(cls: type, key: Any, where: str) -> tuple[str, Any]:
    """``leaf_type`` of a key the user wrote under ``where`` (``space``, ``overrides``); a
    ConfigError naming the key, with the closest field names, when it is none of ``cls``'s."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"config key '{where}': keys are dotted config names such as optim.lr, got {key!r}")
    if key in RESERVED_KEYS:
        raise ConfigError(f"config key '{where}.{key}': {RESERVED_KEYS[key]}")
    place, tp = leaf_type(cls, key)
    if place == "section":
        fields = [name for name, *_ in iter_fields(cls) if name.startswith(key + ".")][:3]
        raise ConfigError(f"config key '{where}.{key}' is a section of {cls.__name__}, not a field: name one of "
                          f"its fields ({', '.join(fields)}, ...)")
    if place == "missing":
        names = [name for name, *_ in iter_fields(cls)]
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else f"`lmforge {_verb(cls)} --help` lists them"
        raise ConfigError(f"config key '{where}.{key}': {cls.__name__} has no field {key!r}; {hint}")
    return place, tp


def _verb(cls: type) -> str:
    return cls.__name__.removesuffix("Config").lower() or "VERB"


def _number(value: Any, key: str, what: str) -> Union[int, float]:
    """A bound as a number: YAML reads ``1e-4`` (no dot) as text, so numeric text is accepted."""
    if isinstance(value, str):
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"config key '{key}.{what}': expected a finite number, got {value!r}")
    return value


def parse_param(cls: type, key: str, spec: Any) -> Param:
    """One entry of ``space`` as a ``Param``; ConfigError naming ``space.KEY`` when it is malformed."""
    place, tp = check_key(cls, key, "space")
    where = f"space.{key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"config key '{where}': expected a mapping {{low, high, log, step}} or {{choices: [...]}}, "
                          f"got {spec!r}")
    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        if extra:
            raise ConfigError(f"config key '{where}': choices cannot be mixed with {', '.join(map(str, extra))}")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"config key '{where}.choices': expected a non-empty list of values, got {choices!r}")
        return Param(key, "choice", choices=tuple(choices))
    unknown = sorted(map(str, set(spec) - RANGE_KEYS))
    if unknown:
        raise ConfigError(f"config key '{where}': unknown entry {unknown[0]!r}; a range has low, high, log and "
                          f"step, a list of values is {{choices: [...]}}")
    missing = [name for name in ("low", "high") if name not in spec]
    if missing:
        raise ConfigError(f"config key '{where}': a range needs low and high (missing {' and '.join(missing)}), "
                          f"or give {{choices: [...]}}")
    low, high = _number(spec["low"], where, "low"), _number(spec["high"], where, "high")
    step = _number(spec["step"], where, "step") if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"config key '{where}.log': expected true or false, got {log!r}")
    kind = _range_kind(tp, place, where, (low, high, step))
    if kind == "int" and not all(isinstance(v, int) or float(v).is_integer() for v in (low, high, step or 1)):
        raise ConfigError(f"config key '{where}': {key} is an integer field: low, high and step must be integers")
    if not low < high:
        raise ConfigError(f"config key '{where}': low must be below high, got low {low} and high {high} "
                          f"(one value: {{choices: [{low}]}})")
    if step is not None and step <= 0:
        raise ConfigError(f"config key '{where}.step': expected a positive number, got {step}")
    if log and low <= 0:
        raise ConfigError(f"config key '{where}': a log range needs low > 0, got {low}")
    if log and step is not None and not (kind == "int" and step == 1):
        raise ConfigError(f"config key '{where}': log and step cannot be combined (Optuna draws log ranges "
                          "continuously): drop one")
    if kind == "int":
        return Param(key, kind, int(low), int(high), log, int(step) if step is not None else None)
    return Param(key, kind, float(low), float(high), log, float(step) if step is not None else None)


def _range_kind(tp: Any, place: str, where: str, numbers: tuple) -> str:
    if place == "mapping":
        return "int" if all(isinstance(v, int) for v in numbers if v is not None) else "float"
    base = _strip_optional(tp)
    if base is int:
        return "int"
    if base is float:
        return "float"
    from lmforge.config import type_name

    raise ConfigError(f"config key '{where}': the field takes {type_name(tp)}, not a number range: "
                      "give {choices: [...]}")


def parse_space(cls: type, space: Any) -> list[Param]:
    """Every entry of ``space`` (a mapping of dotted keys to specs) as ``Param``s, in order."""
    if not isinstance(space, dict):
        raise ConfigError(f"config key 'space': expected a mapping of dotted config keys to ranges or choices, "
                          f"got {space!r}")
    if not space:
        raise ConfigError("config key 'space' is empty: give at least one key to search, e.g. "
                          "{optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}")
    return [parse_param(cls, key, spec) for key, spec in space.items()]


def read_back(cfg: Any, key: str) -> Any:
    """The value at dotted ``key`` of a built config (through dataclasses and mappings)."""
    node = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def check_values(params: list[Param], build: Callable[[dict[str, Any]], Any]) -> list[Param]:
    """Build the command's config with each bound and each choice (``build(overrides)``), so a value
    the field refuses fails now, with one line naming it. Choices come back as the config holds
    them (``"1e-3"`` on a float field becomes 0.001)."""
    checked = []
    for param in params:
        normalised = []
        for what, value in param.values_to_check():
            try:
                cfg = build({param.key: value})
            except ConfigError as err:
                raise ConfigError(f"config key 'space.{param.key}': its {what} ({json.dumps(value)}) is refused: "
                                  f"{err}") from None
            normalised.append(read_back(cfg, param.key))
        if param.kind == "choice":
            if len({json.dumps(v, sort_keys=True) for v in normalised}) < len(normalised):
                raise ConfigError(f"config key 'space.{param.key}.choices': a value is given twice "
                                  f"({', '.join(json.dumps(v) for v in normalised)})")
            param = dataclasses.replace(param, choices=tuple(normalised))
        checked.append(param)
    return checked
