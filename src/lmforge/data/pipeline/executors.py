"""Run shard tasks in parallel: a local process pool (default) or a Ray cluster.

Both executors take the same plain-data tasks and the same function, so a pipeline that
runs on a laptop runs unchanged on a cluster (``executor: ray``). Results come back in
task order whatever the completion order, so the merged statistics are deterministic.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Optional

from lmforge.errors import ConfigError


def _report(done: int, total: int, label: str) -> None:
    if sys.stderr.isatty() or done == total:
        end = "\n" if done == total else "\r"
        print(f"{label}: {done}/{total} shards", end=end, file=sys.stderr, flush=True)


class LocalExecutor:
    """A process pool on this machine, started on first need and kept for every stage of a run
    (starting spawned workers costs about a second: paying it once per run, not per stage)."""

    def __init__(self, workers: int):
        self.workers = workers or os.cpu_count() or 1
        self.pool: Optional[ProcessPoolExecutor] = None

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any], label: str) -> list[Any]:
        """``[fn(t) for t in tasks]``; in this process when one worker is enough."""
        if min(self.workers, len(tasks)) <= 1:
            results = []
            for i, task in enumerate(tasks):
                results.append(fn(task))
                _report(i + 1, len(tasks), label)
            return results
        if self.pool is None:
            # spawn, not fork: the parent may hold threads (torch, Ray, tokenizers) that fork
            # would copy in a locked state.
            self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        results: list[Optional[Any]] = [None] * len(tasks)
        futures = {self.pool.submit(fn, task): i for i, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            _report(done, len(tasks), label)
        return results

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


class RayExecutor:
    """Ship tasks to Ray; starts a local Ray instance when no address is given."""

    def __init__(self, address: str, workers: int):
        try:
            import ray
        except ImportError:
            raise ConfigError("executor ray needs Ray: pip install 'lmforge[ray]'") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = workers
            ray.init(**kwargs)
            self.started = True

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any], label: str) -> list[Any]:
        remote = self.ray.remote(fn)
        refs = [remote.remote(task) for task in tasks]
        pending = list(refs)
        done = 0
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            done += len(ready)
            _report(done, len(tasks), label)
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as err:
            # A user mistake inside a task keeps its one-line message (not Ray's traceback dump).
            from lmforge.errors import LmforgeError

            if isinstance(err.cause, LmforgeError):
                raise err.cause from None
            raise

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
