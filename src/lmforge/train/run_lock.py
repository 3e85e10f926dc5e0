"""One writer per run directory: an advisory lock held for the whole of a training run.

`RUN_DIR/.lock` is opened and locked with `flock` (exclusive, non-blocking), then holds the
holder's PID, host and start time for the error a second writer gets. The kernel drops a
`flock` when its process ends, however it ends (SIGKILL included), so a lock file left by a
dead process is simply locked again by the next run, which says whose lock it took over.
Nothing ever has to guess from a PID whether the holder is alive.

Only writers take it (`lmforge pretrain`, one rank of a DDP run). Readers (`evaluate`,
`generate`, `convert`) need none: a checkpoint appears by an atomic rename, complete
(`train/checkpoint.py`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

from lmforge.errors import ConfigError

LOCK_FILE = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not protected there
    fcntl = None  # type: ignore[assignment]


def _describe(holder: dict) -> str:
    started = holder.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{since}"


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    try:
        holder = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """`with RunLock(run_dir) as lock:` holds the run directory's lock; `lock.took_over` names
    the previous holder when its process had ended without releasing the file."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None
        self.took_over: str = ""

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(f"run directory '{self.path.parent}' is in use by another training run "
                              f"({_describe(holder)}): wait for it to finish, stop it, or pass another "
                              "--train.run_dir") from None
        previous = _read_holder(fd)
        if previous:
            self.took_over = _describe(previous)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode("utf-8"))
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the file (so the next run has nothing to take over) and drop the lock."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
