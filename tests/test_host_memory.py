"""Host allocator settings for CPU training: freed buffers are reused instead of re-faulted."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from conftest import tiny_pretrain_config
from lmforge.train.host_memory import keep_freed_memory
from lmforge.train.loop import pretrain

IS_GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# Allocate 16 MiB with malloc, free it, and report from glibc's own statistics (mallinfo2):
# how many chunks the allocation added to the mmap'd ones, and how much heap stays after free.
PROBE = textwrap.dedent("""
    import ctypes, sys
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                         "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "keep":
        from lmforge.train.host_memory import keep_freed_memory
        keep_freed_memory()
    before = libc.mallinfo2().hblks
    block = libc.malloc(16 << 20)
    during = libc.mallinfo2().hblks
    libc.free(block)
    print(during - before, libc.mallinfo2().arena)
""")


def probe(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    mmapped, heap_bytes = out.stdout.split()
    return int(mmapped), int(heap_bytes)


@pytest.mark.skipif(not IS_GLIBC or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc >= 2.33")
def test_a_large_buffer_comes_from_the_heap_and_stays_there():
    # Default: 16 MiB is over glibc's initial mmap threshold (128 KiB), so it gets its own
    # mapping, returned to the OS on free and faulted in again next time. Kept: it is carved
    # from the heap, and the heap is not trimmed after the free, so the next step reuses it.
    assert probe("plain")[0] == 1
    mmapped, heap_bytes = probe("keep")
    assert mmapped == 0
    assert heap_bytes >= 16 << 20


@pytest.mark.skipif(not IS_GLIBC, reason="the setting is glibc's mallopt")
def test_applied_once_and_reported(tiny_run, tmp_path, capsys):
    note = keep_freed_memory()
    assert note.startswith("allocator: freed memory kept") and keep_freed_memory() is note
    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "run", max_steps=1))
    assert note in capsys.readouterr().err
    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "off", max_steps=1, **{"train.keep_freed_memory": False}))
    assert note not in capsys.readouterr().err
