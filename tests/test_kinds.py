"""The shared registry of named kinds with typed options (data steps and tasks use it)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lmforge.kinds import KindRegistry


@dataclass
class NoOptions:
    pass


def test_kinds_are_listed_by_name_with_their_spec_and_named_class():
    registry = KindRegistry("widget", ())

    @registry.register("zeta", NoOptions, "the last")
    class Zeta:
        pass

    @registry.register("alpha", NoOptions, "the first")
    class Alpha:
        pass

    kinds = registry.all()
    assert list(kinds) == ["alpha", "zeta"]
    assert (kinds["alpha"].cls, kinds["alpha"].options_cls, kinds["alpha"].summary) == (Alpha, NoOptions, "the first")
    assert Alpha.name == "alpha" and Zeta.name == "zeta"


def test_a_second_class_under_a_taken_name_is_refused():
    registry = KindRegistry("widget", ())

    @registry.register("same", NoOptions, "one")
    class One:
        pass

    registry.register("same", NoOptions, "one again")(One)  # the same class again is harmless
    with pytest.raises(RuntimeError, match="widget 'same' registered twice"):
        @registry.register("same", NoOptions, "two")
        class Two:
            pass


def test_a_listed_module_that_does_not_exist_fails_loudly():
    with pytest.raises(ModuleNotFoundError):
        KindRegistry("widget", ("lmforge.no_such_module",)).all()


def test_data_steps_and_tasks_share_it():
    from lmforge.data.steps import registered_steps
    from lmforge.train.tasks import registered_tasks

    steps = registered_steps()
    assert {"clean", "gopher_quality", "minhash_dedup", "pii"} <= set(steps) and list(steps) == sorted(steps)
    assert steps["minhash_dedup"].cls.name == "minhash_dedup"
    assert list(registered_tasks()) == ["causal_lm", "masked_lm", "seq2seq", "sequence_classification", "sft", "span_corruption", "token_classification"]
