"""Quality filters of the data pipeline, each a registered ``DocStep`` (see ``lmforge.data.steps``).

- ``heuristics.py``: ``length`` and ``heuristics`` (character and line heuristics)
- ``gopher.py``: ``gopher_quality`` and ``gopher_repetition`` (Rae et al. 2021)
- ``c4.py``: ``c4`` (Raffel et al. 2020), which also rewrites text (keeps good lines)
- ``fineweb.py``: ``fineweb_quality`` (Penedo et al. 2024)
- ``words.py``: the shared regex word splitter and per-document ``TextStats``

Steps are imported by ``lmforge.data.steps`` when the registry is first listed; this
package's ``__init__`` only holds the option check they share.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lmforge.errors import ConfigError


def check_options(step_name: str, options: Any) -> None:
    """Raise ``ConfigError`` for a threshold no document could meet sensibly.

    Fields named ``*_frac`` are fractions in [0, 1]; every other number (counts, lengths,
    ratios) must not be negative. ``None`` turns a rule off and is always allowed.
    """
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if field.name.endswith("_frac") and not 0 <= value <= 1:
            raise ConfigError(f"data step {step_name!r}: option {field.name!r} is a fraction, set it between 0 "
                              f"and 1 (or null to turn the rule off); got {value}")
        if value < 0:
            raise ConfigError(f"data step {step_name!r}: option {field.name!r} must not be negative "
                              f"(null turns the rule off); got {value}")
