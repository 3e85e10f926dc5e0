"""Mixed precision for every forward pass (training step, periodic and final evaluation).

Its own module so the loop, the tasks and `lmforge evaluate` share one definition without
importing each other.
"""

from __future__ import annotations

import contextlib

import torch


def autocast_context(device: torch.device, precision: str):
    """Autocast to bf16/fp16 (``train.precision``); a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
