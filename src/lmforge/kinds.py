"""Registries of named kinds with typed options: data steps, training tasks, and later adapters,
quantisers and parallel plans.

A kind is a class registered under a name with an options dataclass (fields made with
`lmforge.config.option`, so a recipe's options are validated like any config key) and a one-line
summary; a config names it, and the listing verbs (`lmforge data steps`, `lmforge tasks`) print
them with their options. The modules that register a registry's kinds are listed, not
discovered, so a listing is deterministic and a broken module fails loudly.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class KindSpec:
    name: str
    options_cls: type
    cls: type  # the registered class; it gets `name` as a class attribute
    summary: str


class KindRegistry:
    """The kinds of one sort (``what``: "data step", "task"), filled by the ``modules`` it imports
    when listed (an import error there is a broken install or module: it propagates)."""

    def __init__(self, what: str, modules: tuple[str, ...]) -> None:
        self.what, self.modules = what, modules
        self._specs: dict[str, KindSpec] = {}

    def register(self, name: str, options_cls: type, summary: str) -> Callable[[type], type]:
        """Class decorator: make the class the kind ``name``."""

        def wrap(cls: type) -> type:
            if name in self._specs and self._specs[name].cls is not cls:
                raise RuntimeError(f"{self.what} {name!r} registered twice")
            cls.name = name
            self._specs[name] = KindSpec(name, options_cls, cls, summary)
            return cls

        return wrap

    def all(self) -> dict[str, KindSpec]:
        """Every registered kind by name, sorted."""
        for module in self.modules:
            importlib.import_module(module)
        return dict(sorted(self._specs.items()))
