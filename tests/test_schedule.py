"""Learning-rate schedules at hand-computed steps (peak lr 1, floor 0.1, 10 warmup, 110 steps)."""

import math

import pytest

from lmforge.config import OptimConfig
from lmforge.errors import ConfigError
from lmforge.train.schedule import lr_at

MAX_STEPS = 110


def cfg(schedule: str, **kw) -> OptimConfig:
    return OptimConfig(**{"lr": 1.0, "warmup_steps": 10, "min_lr_ratio": 0.1, "schedule": schedule, **kw})


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "wsd"])
def test_warmup_is_linear_from_peak_over_warmup_to_peak(schedule):
    c = cfg(schedule)
    assert [lr_at(s, c, MAX_STEPS) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_at(10, c, MAX_STEPS) == pytest.approx(1.0)  # first step after warmup is at peak


def test_constant():
    assert [lr_at(s, cfg("constant"), MAX_STEPS) for s in (10, 109, 500)] == [1.0, 1.0, 1.0]


def test_linear():
    c = cfg("linear")
    # progress (step - 10) / 100
    assert lr_at(60, c, MAX_STEPS) == pytest.approx(1 - 0.9 * 0.5)
    assert lr_at(109, c, MAX_STEPS) == pytest.approx(1 - 0.9 * 0.99)
    assert lr_at(110, c, MAX_STEPS) == pytest.approx(0.1)
    assert lr_at(1000, c, MAX_STEPS) == pytest.approx(0.1)


def test_cosine():
    c = cfg("cosine")
    assert lr_at(35, c, MAX_STEPS) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))  # 0.868198
    assert lr_at(35, c, MAX_STEPS) == pytest.approx(0.8681981, abs=1e-7)
    assert lr_at(60, c, MAX_STEPS) == pytest.approx(0.55)
    assert lr_at(110, c, MAX_STEPS) == pytest.approx(0.1)
    assert lr_at(10_000, c, MAX_STEPS) == pytest.approx(0.1)


def test_wsd_is_stable_then_decays_linearly_over_the_last_fraction():
    c = cfg("wsd", decay_fraction=0.2)  # decay over the last round(0.2 * 110) = 22 steps: from step 88
    assert lr_at(50, c, MAX_STEPS) == 1.0
    assert lr_at(87, c, MAX_STEPS) == 1.0
    assert lr_at(88, c, MAX_STEPS) == pytest.approx(1.0)
    assert lr_at(99, c, MAX_STEPS) == pytest.approx(1 - 0.9 * 11 / 22)
    assert lr_at(110, c, MAX_STEPS) == pytest.approx(0.1)
    # decay_fraction 0 never decays; decay_fraction 1 is the linear schedule
    assert lr_at(109, cfg("wsd", decay_fraction=0.0), MAX_STEPS) == 1.0
    assert lr_at(500, cfg("wsd", decay_fraction=0.0), MAX_STEPS) == 1.0
    # (decay from the end of warmup, step 10, over 100 steps: 1 - 0.9 * (step - 10) / 100)
    for s, expected in ((10, 1.0), (40, 0.73), (109, 0.109)):
        assert lr_at(s, cfg("wsd", decay_fraction=1.0), MAX_STEPS) == pytest.approx(expected)


def test_wsd_decay_never_starts_inside_warmup():
    c = cfg("wsd", decay_fraction=0.5)  # 20 steps: half would start the decay at step 10 = warmup end
    assert lr_at(9, c, 20) == pytest.approx(1.0)
    assert lr_at(15, c, 20) == pytest.approx(1 - 0.9 * 5 / 10)
    c = cfg("wsd", decay_fraction=0.9)  # would start at step 2, clamped to 10
    assert lr_at(15, c, 20) == pytest.approx(1 - 0.9 * 5 / 10)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "wsd"])
@pytest.mark.parametrize("max_steps", [0, 5, 10])
def test_unknown_or_short_horizon_is_warmup_then_constant(schedule, max_steps):
    c = cfg(schedule)
    assert lr_at(3, c, max_steps) == pytest.approx(0.4)
    assert [lr_at(s, c, max_steps) for s in (10, 11, 1000)] == [1.0, 1.0, 1.0]


def test_no_warmup_starts_at_peak():
    c = cfg("cosine", warmup_steps=0)
    assert lr_at(0, c, 100) == 1.0
    assert lr_at(50, c, 100) == pytest.approx(0.55)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "wsd"])
def test_monotone_after_warmup_and_never_below_floor(schedule):
    c = cfg(schedule)
    lrs = [lr_at(s, c, MAX_STEPS) for s in range(10, 130)]
    assert all(a >= b - 1e-12 for a, b in zip(lrs, lrs[1:]))
    assert min(lrs) >= 0.1 - 1e-12


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.schedule"):
        lr_at(50, cfg("step"), MAX_STEPS)
