"""Throughput accounting (peak FLOP/s, MFU, peak memory) and run logging (JSON lines, progress).

MFU, model FLOPs utilisation (Chowdhery et al. 2022, PaLM, appendix B), is the FLOP/s the
model's own arithmetic needs at the achieved token rate divided by the hardware's peak:
    mfu = tokens_per_second * flops_per_token / peak_flops
with flops_per_token = 6N + 12 L H Q T (``lmforge.models.flops_per_token``). Rematerialised
work (activation checkpointing) does not count, so MFU is comparable across codebases.
Tokens are the raw tokens the loop reads, and each task says what one costs
(``Task.flops_per_token``): for T5 span corruption that is one example's encoder work over
its inputs plus decoder work over its (much shorter) targets (``encoder_decoder_flops``),
divided by the raw tokens it reads.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, Any, Optional

import torch

# Dense (no 2:4 sparsity) peak FLOP/s per GPU, keyed by (name, dtype). ``name`` is matched as
# a whole word in ``torch.cuda.get_device_name()``, lowercased; the longest match wins, so
# "h100 pcie" beats "h100" and "a100" is never read as "a10". Vendor datasheets print tensor
# figures with sparsity; the numbers here are those halved.
#   bf16/fp16: tensor cores (FP32 accumulate). tf32: tensor cores on fp32 inputs, used for
#   fp32 matmuls only when torch allows TF32. fp32: the non-tensor FP32 rate.
# Sources:
#   H100 SXM/PCIe/NVL, H200, GH200, A100, A10, L4, L40S, V100, T4: NVIDIA product datasheets
#     (nvidia.com/en-us/data-center/<product>), e.g. H100 SXM BF16 1,979 TFLOPS with sparsity.
#   A10G: AWS publishes no datasheet; the A10 figures are used (same GA102 configuration), so
#     treat its MFU as approximate.
#   RTX 4090: NVIDIA Ada Lovelace architecture whitepaper, appendix (AD102: 165.2 BF16 with
#     FP32 accumulate, 82.6 TF32, 82.6 FP32). RTX 3090: Ampere GA102 whitepaper (71 / 35.6 / 35.6).
#   MI300X: AMD Instinct MI300X datasheet (1,307.4 BF16, 653.7 TF32, 163.4 FP32 matrix).
_GPU_SPECS: dict[str, tuple[Optional[float], float, Optional[float], float]] = {
    # name:       (bf16,     fp16,     tf32,     fp32)
    "h100":       (989e12,   989e12,   494.7e12, 66.9e12),  # SXM ("NVIDIA H100 80GB HBM3")
    "h100 pcie":  (756e12,   756e12,   378e12,   51.2e12),
    "h100 nvl":   (835e12,   835e12,   417.5e12, 60e12),
    "h200":       (989e12,   989e12,   494.7e12, 66.9e12),
    "h200 nvl":   (835e12,   835e12,   417.5e12, 60e12),
    "gh200":      (989e12,   989e12,   494.7e12, 67e12),
    "a100":       (312e12,   312e12,   156e12,   19.5e12),
    "a10":        (125e12,   125e12,   62.5e12,  31.2e12),
    "a10g":       (125e12,   125e12,   62.5e12,  31.2e12),
    "l4":         (121e12,   121e12,   60e12,    30.3e12),
    "l40s":       (362e12,   362e12,   183e12,   91.6e12),
    "rtx 4090":   (165.2e12, 165.2e12, 82.6e12,  82.6e12),
    "rtx 3090":   (71e12,    71e12,    35.6e12,  35.6e12),
    "v100":       (None,     125e12,   None,     15.7e12),  # SXM2; no bf16 tensor cores
    "v100-pcie":  (None,     112e12,   None,     14e12),
    "t4":         (None,     65e12,    None,     8.1e12),
    "mi300x":     (1307.4e12, 1307.4e12, 653.7e12, 163.4e12),
}
GPU_PEAK_FLOPS: dict[tuple[str, str], float] = {
    (name, dtype): flops
    for name, row in _GPU_SPECS.items()
    for dtype, flops in zip(("bf16", "fp16", "tf32", "fp32"), row)
    if flops is not None
}


def lookup_gpu_peak_flops(device_name: str, dtype_key: str) -> float:
    """Peak FLOP/s of the GPU called ``device_name`` for ``dtype_key`` (bf16/fp16/tf32/fp32); 0 if unknown."""
    lowered = device_name.lower()
    matches = [name for name in _GPU_SPECS if re.search(rf"\b{re.escape(name)}\b", lowered)]
    if not matches:
        return 0.0
    return GPU_PEAK_FLOPS.get((max(matches, key=len), dtype_key), 0.0)


def _dtype_key(dtype: torch.dtype) -> str:
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    # fp32 matmuls run on tensor cores only when the user allowed TF32
    return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"


_cpu_peak_cache: dict[tuple[torch.dtype, int], float] = {}


def measure_cpu_peak_flops(dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 0.5) -> float:
    """Best FLOP/s of a square matmul (up to ``size``) over ~``seconds``, with the current torch thread count.

    A CPU has no datasheet figure that a framework can reach, so its peak is what a large
    matmul achieves here (BLAS runs near the machine's real limit on it). The best repeat is
    kept because noise from other processes only ever slows a repeat down. The size grows from
    256 while one product takes under 50 ms, so a dtype without fast CPU kernels (fp16 on most
    x86 CPUs runs a reference loop, tens of seconds for 2048^3) still measures in about a second.
    """
    n = 256
    while True:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        out = torch.empty(n, n, dtype=dtype)
        tick = time.perf_counter()
        torch.mm(a, b, out=out)  # also the warm-up: thread pool start, page faults on out
        if n >= size or time.perf_counter() - tick > 0.05:
            break
        n *= 2
    best = math.inf
    num_repeats, start = 0, time.perf_counter()
    while num_repeats < 3 or time.perf_counter() - start < seconds:
        tick = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - tick)
        num_repeats += 1
    return 2.0 * n ** 3 / best


def peak_flops(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """Peak FLOP/s of ``device`` for matmuls in ``dtype``: 0.0 when unknown (MFU is then reported as None).

    CUDA: the datasheet table above, by device name. CPU: measured once per process (per
    dtype and thread count) with ``measure_cpu_peak_flops``; takes about half a second.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return lookup_gpu_peak_flops(torch.cuda.get_device_name(device), _dtype_key(dtype))
    if device.type == "cpu":
        key = (dtype, torch.get_num_threads())
        if key not in _cpu_peak_cache:
            _cpu_peak_cache[key] = measure_cpu_peak_flops(dtype)
        return _cpu_peak_cache[key]
    return 0.0


def mfu(tokens_per_second: float, flops_per_token: float, peak: float) -> Optional[float]:
    """Model FLOPs utilisation in [0, 1] (see the module docstring); None when the peak is unknown."""
    if peak <= 0:
        return None
    return tokens_per_second * flops_per_token / peak


def peak_memory_bytes(device: torch.device) -> int:
    """High-water mark of memory use on ``device``.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache).
    CPU: the whole process's resident-set high-water mark (``ru_maxrss``), so it includes
    Python, libraries and data, and never goes down. 0 where neither applies.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "cpu":
        try:
            import resource
        except ImportError:  # Windows
            return 0
        max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(max_rss if sys.platform == "darwin" else max_rss * 1024)  # macOS bytes, Linux KiB
    return 0


def _jsonable(value: Any) -> Any:
    """Plain JSON values: tensor/numpy scalars unwrapped, NaN/inf written as null (JSON has neither)."""
    if hasattr(value, "item") and not isinstance(value, (int, float, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def drop_records_after(path: str | Path, step: int) -> int:
    """Rewrite ``metrics.jsonl`` without the records of steps after ``step`` (a resume or a
    rollback goes on from ``step``, so those steps are trained and logged again); returns how
    many were dropped. Atomic: the file is replaced by a complete new one."""
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record_step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            record_step = None  # a torn last line from a kill mid-write: dropped too
        if isinstance(record_step, int) and record_step <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)
    return dropped


class MetricsWriter:
    """Appends one JSON object per line to ``path``, flushed per line so a crash loses nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(_jsonable(record), allow_nan=False) + "\n")
        self._file.flush()

    def drop_after(self, step: int) -> int:
        """`drop_records_after` on this file, which is reopened (the old one was replaced)."""
        self._file.close()
        dropped = drop_records_after(self.path, step)
        self._file = self.path.open("a", encoding="utf-8")
        return dropped

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressReporter:
    """A tqdm bar (step, loss, tok/s, ETA) on a terminal; otherwise a plain line every ``log_interval`` steps.

    Plain lines are for logs and CI, where a bar's carriage returns turn into noise.
    ``total_steps`` 0 means unknown (no ETA). ``enabled=False`` (non-main ranks) prints nothing.
    """

    def __init__(self, total_steps: int, log_interval: int, enabled: bool = True, initial_step: int = 0,
                 stream: Optional[IO[str]] = None) -> None:
        self.total_steps = total_steps
        self.log_interval = max(1, log_interval)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._start_step, self._start_time = initial_step, time.perf_counter()
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps or None, initial=initial_step, file=self.stream,
                             unit="step", dynamic_ncols=True)

    def update(self, step: int, record: dict[str, Any]) -> None:
        """Report that ``step`` steps are done; ``record`` holds loss, lr, tokens_per_second, mfu, ..."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            if "tokens_per_second" in record:
                self._bar.set_postfix(loss=f"{record['loss']:.4f}",
                                      tok_s=f"{record['tokens_per_second']:,.0f}", refresh=False)
            return
        if step % self.log_interval == 0 or step == 1 or step == self.total_steps:
            self.write(self.format_line(step, record))

    def format_line(self, step: int, record: dict[str, Any]) -> str:
        total = f"/{self.total_steps}" if self.total_steps else ""
        parts = [f"step {step}{total}"]
        if record.get("loss") is not None:
            parts.append(f"loss {record['loss']:.4f}")
        if record.get("val_loss") is not None:
            parts.append(f"val_loss {record['val_loss']:.4f}")
        if record.get("lr") is not None:
            parts.append(f"lr {record['lr']:.2e}")
        if record.get("tokens_per_second") is not None:
            parts.append(f"{record['tokens_per_second']:,.0f} tok/s")
        if record.get("mfu") is not None:
            parts.append(f"mfu {100 * record['mfu']:.1f}%")
        done = step - self._start_step
        if self.total_steps and done > 0 and step < self.total_steps:
            per_step = (time.perf_counter() - self._start_time) / done
            parts.append(f"eta {_duration(per_step * (self.total_steps - step))}")
        return " | ".join(parts)

    def write(self, message: str) -> None:
        """Print a message without breaking the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
