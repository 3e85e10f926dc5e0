"""The Optuna study behind a sweep: storage, sampler, pruner, and the workers that run trials.

Counting. ``trials`` is the number of *finished* trials (complete, pruned or failed) the study
should hold. A worker takes the next trial under a file lock (``RUN_DIR/.sweep_ask.lock``):
it counts the finished and running trials and asks Optuna for a new one only while that count
is below ``trials``, so N parallel workers never start more than the study needs, and a rerun of
a finished sweep starts none.

Resume. The study lives in its storage (by default SQLite, ``RUN_DIR/study.db``) and is loaded
when it exists. A sweep holds ``RUN_DIR/.lock`` while it runs, so a trial that the storage says
is running when a sweep starts belongs to a sweep that was killed: it is marked failed and
listed in the study's ``interrupted`` attribute, is not counted, and its place is taken by a new
trial. A rerun with another command, metric, direction, search space or base config (recipe +
overrides) is refused: the stored trials would not be comparable (`check_signature`); the
number of trials, the workers, the pruner and the sampler may change between runs.

Parallel. ``parallel: N`` starts N worker processes (spawned, so each has its own torch and
Optuna state) that share the study through the storage; each uses max(1, cores // N) torch
threads. SQLite serialises the writes (each waits up to 60 s for the database), which is plenty
for trials that take seconds to hours. Each worker's sampler is seeded from ``seed``, its index
and the number of trials the study held when it started, so workers and reruns draw different
values (a TPE sampler's first trials are random).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from lmforge.errors import ConfigError, TrainingError
from lmforge.sweep.plan import Plan, flat
from lmforge.sweep.trial import ERROR_ATTR, Outcome, run_trial

SIGNATURE_ATTR, INTERRUPTED_ATTR = "lmforge_sweep", "interrupted"
ASK_LOCK = ".sweep_ask.lock"


def require_optuna() -> Any:
    """The optuna module, quiet (the sweep prints its own line per trial)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("lmforge sweep needs Optuna: pip install 'lmforge[finetune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


_STORAGES: dict[str, Any] = {}


def _sqlite_connector(url: str) -> Any:
    """Connections to a SQLite ``url`` in write-ahead-log mode with synchronous=NORMAL: readers do
    not wait for the writer (parallel workers), and a commit is not an fsync (a study survives a
    killed process; only a power cut may lose its last trials). Each waits up to 60 s for a lock."""
    import sqlite3

    from sqlalchemy.engine import make_url

    database = make_url(url).database or ":memory:"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(database, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return connect


def open_storage(url: str) -> Any:
    """An RDB storage for ``url`` (one per process and URL); SQLite as ``_sqlite_connector`` says."""
    if url in _STORAGES:
        return _STORAGES[url]
    optuna = require_optuna()
    kwargs = {"creator": _sqlite_connector(url)} if url.startswith("sqlite:") else {}
    try:
        _STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        return _STORAGES[url]
    except Exception as err:  # a bad URL, a missing driver, an unreachable server: SQLAlchemy's many errors
        raise ConfigError(f"config key 'storage': cannot open {url!r}: {' '.join(str(err).split())[:300]}") from None


def make_sampler(plan: Plan, seed_salt: int = 0) -> Any:
    """The sampler, seeded from ``plan.cfg.seed`` and ``seed_salt``."""
    optuna = require_optuna()
    cfg = plan.cfg
    seed = (cfg.seed * 1_000_003 + seed_salt) % 2**32
    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.tpe_startup_trials)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(plan: Plan) -> Any:
    """Create or load the study (with the sampler of seed salt 0 and the configured pruner)."""
    optuna = require_optuna()
    cfg = plan.cfg
    sampler = make_sampler(plan)
    if cfg.pruner.name == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner.startup_trials,
                                             n_warmup_steps=cfg.pruner.warmup_steps)
    else:
        pruner = optuna.pruners.NopPruner()
    return optuna.create_study(storage=open_storage(plan.storage), study_name=cfg.study_name, sampler=sampler,
                               pruner=pruner, direction=cfg.direction, load_if_exists=True)


def check_signature(study: Any, plan: Plan) -> None:
    """Store the sweep's signature with a new study; refuse to continue one made otherwise."""
    wanted, stored = plan.signature(), study.user_attrs.get(SIGNATURE_ATTR)
    if stored is None:
        if study.trials:
            raise ConfigError(f"study {plan.cfg.study_name!r} in {plan.storage} was not made by lmforge sweep: "
                              "pass another --study_name or --storage")
        study.set_user_attr(SIGNATURE_ATTR, wanted)
        return
    if stored == wanted:
        return
    old, new = flat(stored), flat(wanted)
    key = next(k for k in [*old, *new] if old.get(k, "(absent)") != new.get(k, "(absent)"))
    raise ConfigError(f"study {plan.cfg.study_name!r} in {plan.storage} was run with {key} = "
                      f"{old.get(key, '(absent)')!r}, this sweep has {new.get(key, '(absent)')!r}: its trials are "
                      f"not comparable; pass a new --study_name or --run_dir, or restore the old value")


def mark_interrupted(study: Any) -> list[int]:
    """Trials still running in the storage when a sweep starts (their sweep was killed): failed,
    listed as interrupted, and not counted. Called only under the sweep's lock."""
    from optuna.trial import TrialState

    stale = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if stale:
        study.set_user_attr(INTERRUPTED_ATTR, sorted({*study.user_attrs.get(INTERRUPTED_ATTR, []), *stale}))
        for number in stale:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return stale


def counts(study: Any) -> dict[str, int]:
    """Trials by state (complete, pruned, failed, running), the interrupted ones left out."""
    from optuna.trial import TrialState

    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
             TrialState.RUNNING: "running"}
    interrupted = set(study.user_attrs.get(INTERRUPTED_ATTR, []))
    out = dict.fromkeys(names.values(), 0)
    for trial in study.get_trials(deepcopy=False):
        if trial.state in names and trial.number not in interrupted:
            out[names[trial.state]] += 1
    return out


def finished(study: Any) -> int:
    c = counts(study)
    return c["complete"] + c["pruned"] + c["failed"]


@contextlib.contextmanager
def ask_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive flock on RUN_DIR/.sweep_ask.lock (waits): counting and asking are one step."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; parallel workers may overshoot by a trial or two
        yield
        return
    with open(run_dir / ASK_LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _next_trial(study: Any, plan: Plan) -> Optional[Any]:
    with ask_lock(plan.run_dir):
        c = counts(study)
        if c["complete"] + c["pruned"] + c["failed"] + c["running"] >= plan.cfg.trials:
            return None
        return study.ask()


def _tell(study: Any, trial: Any, outcome: Outcome) -> None:
    from optuna.trial import TrialState

    if outcome.state == "complete":
        study.tell(trial, outcome.value)
    elif outcome.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def _describe(plan: Plan, trial: Any, outcome: Outcome, seconds: float) -> str:
    values = ", ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
    what = {"complete": f"{plan.cfg.metric} {outcome.value:.4f}" if outcome.value is not None else "",
            "pruned": f"pruned at {plan.cfg.metric} {outcome.value:.4f}" if outcome.value is not None else "pruned",
            "failed": f"failed: {outcome.error}"}[outcome.state]
    return f"trial {trial.number}: {what} ({values}) in {seconds:.1f} s"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def work(plan: Plan, worker: int = 0, threads: Optional[int] = None) -> int:
    """Run trials of ``plan``'s study until it holds ``trials`` finished ones; returns how many this
    worker ran. ``threads``: torch threads for this process (a spawned worker's share of the cores)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    study = open_study(plan)
    study.sampler = make_sampler(plan, seed_salt=1_009 * worker + 7_919 * len(study.trials))
    ran = 0
    while (trial := _next_trial(study, plan)) is not None:
        start = time.perf_counter()
        try:
            outcome = run_trial(plan, trial)
        except BaseException as err:  # a bug or an interrupt: the trial does not count, the sweep stops
            study.set_user_attr(INTERRUPTED_ATTR, sorted({*study.user_attrs.get(INTERRUPTED_ATTR, []), trial.number}))
            trial.set_user_attr(ERROR_ATTR, f"interrupted: {type(err).__name__}: {err}"[:500])
            study.tell(trial, state=require_optuna().trial.TrialState.FAIL)
            raise
        _tell(study, trial, outcome)
        ran += 1
        print(_describe(plan, trial, outcome, time.perf_counter() - start), flush=True)
        if outcome.fatal:
            raise ConfigError(outcome.error)
        if outcome.state == "failed":
            _stop_if_every_trial_fails(study, outcome.error)
    return ran


SAME_FAILURES = 3


def _stop_if_every_trial_fails(study: Any, error: str) -> None:
    """Stop once the study's first ``SAME_FAILURES`` trials have all failed with one message and
    none has gone better: a missing shards directory or a bad recipe fails every trial alike,
    and running the rest only repeats it."""
    from optuna.trial import TrialState

    interrupted = set(study.user_attrs.get(INTERRUPTED_ATTR, []))
    trials = [t for t in study.get_trials(deepcopy=False) if t.number not in interrupted
              and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    if len(trials) >= SAME_FAILURES and all(t.state == TrialState.FAIL and t.user_attrs.get(ERROR_ATTR) == error
                                            for t in trials):
        raise TrainingError(f"the study's first {len(trials)} trials all failed the same way, so the sweep stops "
                            f"(rerun it once fixed): {error}")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_workers(plan: Plan, workers: int) -> int:
    """``workers`` spawned processes running ``work`` on the shared study; the trials they ran.
    The first worker error is raised here (after the others have stopped)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, available_cores() // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(work, plan, index, threads) for index in range(workers)]
        errors, ran = [], 0
        for future in futures:
            try:
                ran += future.result()
            except BaseException as err:  # noqa: BLE001 - collected, the first re-raised below
                errors.append(err)
    sys.stdout.flush()
    if errors:
        raise errors[0]
    return ran
