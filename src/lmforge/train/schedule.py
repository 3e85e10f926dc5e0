"""Learning-rate schedules: linear warmup, then constant, linear, cosine or WSD.

``lr_at(step, cfg, max_steps)`` is the learning rate for the optimiser update that takes
the model from ``step`` to ``step + 1`` (steps count from 0). With W = ``warmup_steps``,
M = ``max_steps``, peak = ``cfg.lr`` and floor = ``cfg.min_lr_ratio * cfg.lr``:

- warmup, step < W: ``peak * (step + 1) / W``. The first update already moves (at peak/W,
  not 0, which would waste a step) and the last warmup update is at exactly peak.
- after warmup, with progress p = (step - W) / (M - W) clamped to [0, 1]:
  - constant: peak.
  - linear:   peak - (peak - floor) * p.
  - cosine:   floor + (peak - floor) * (1 + cos(pi * p)) / 2  (SGDR, Loshchilov & Hutter
    2017, arXiv 1608.03983, without restarts; as in GPT-3 and Chinchilla training).
  - wsd:      warmup-stable-decay (Hu et al. 2024, MiniCPM, arXiv 2404.06395): peak until the
    last ``decay_fraction`` of the M steps, then linear to floor. The decay starts at step
    D = max(W, M - round(decay_fraction * M)), with p = (step - D) / (M - D).
  The schedule reaches the floor at step M, i.e. it is the value after training; the last
  update (step M - 1) is one decay increment above it. Steps past M stay at the floor.

Unknown length (budget by tokens or wall-clock time): callers pass their best estimate of
M (e.g. from max_tokens / tokens_per_step, or from the speed of the first steps under a
time budget). When M <= W (including M = 0), every schedule is warmup then constant peak:
there is no decay span to spread a decay over.
"""

from __future__ import annotations

import math

from lmforge.config import OptimConfig
from lmforge.errors import ConfigError


def lr_at(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Learning rate for the update at 0-based ``step`` of a ``max_steps``-step run."""
    peak, warmup = cfg.lr, cfg.warmup_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.schedule == "constant" or max_steps <= warmup:
        return peak
    floor = cfg.min_lr_ratio * peak
    decay_start = warmup
    if cfg.schedule == "wsd":
        decay_start = max(warmup, max_steps - round(cfg.decay_fraction * max_steps))
        if step < decay_start or decay_start >= max_steps:  # stable phase (all of it if decay_fraction 0)
            return peak
    progress = min(1.0, (step - decay_start) / (max_steps - decay_start))
    if cfg.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule in ("linear", "wsd"):
        return peak - (peak - floor) * progress
    raise ConfigError(f"optim.schedule '{cfg.schedule}' is unknown: use constant, linear, cosine or wsd")
