"""Host memory for training on CPU: keep freed memory in the process for the next step.

A training step frees and re-allocates the same large buffers (activations, logits, gradients)
every step. glibc's malloc serves requests above its mmap threshold (dynamic, at most 32 MiB on
64-bit) with fresh mmap'd pages and gives the top of the heap back to the OS once more than the
trim threshold is free, so each step pays again for page faults and for the kernel zeroing
those pages. mallopt(3) with the mmap threshold at its maximum and a 2 GiB trim threshold keeps
freed memory for reuse: the run-time form of `MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=...`, a standard CPU-training setting (as is preloading jemalloc or
tcmalloc). The cost: the process keeps its peak memory instead of handing it back between steps.

Measured on the 2-core dev box, CPU fp32, `lmforge pretrain` of llama-135m (vocabulary 49152)
at batch 2 x 256: 125 tokens/s by default, 147 with these settings (1.18x; system time 30 s ->
12 s in the same length of benchmark). Quickstart-sized models (4M parameters, 4096 vocabulary)
show no change beyond run-to-run noise: their buffers stay under the default thresholds.

Not glibc (macOS, musl, Windows): nothing is changed, and the caller is told so.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's <malloc.h> parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for this parameter on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: 2 GiB

_applied: str | None = None


def keep_freed_memory() -> str:
    """Apply the settings once per process; returns a one-line note on what was done."""
    global _applied
    if _applied is not None:
        return _applied
    if not sys.platform.startswith("linux"):
        _applied = f"allocator unchanged ({sys.platform}: not glibc)"
        return _applied
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        _applied = "allocator unchanged (the C library is not glibc)"
        return _applied
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    _applied = ("allocator: freed memory kept for reuse (glibc mmap threshold 32 MiB, trim threshold 2 GiB)"
                if ok else "allocator unchanged (glibc refused mallopt)")
    return _applied
