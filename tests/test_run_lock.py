"""One writer per run directory (train/run_lock.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.errors import ConfigError
from lmforge.train import checkpoint as ckpt
from lmforge.train.run_lock import LOCK_FILE, RunLock
from run_safety_helpers import pretrain_args, run_cli, training_steps


def test_a_second_writer_gets_one_line_naming_the_holder(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    with RunLock(run):  # another training run holds the directory
        status, errors, _ = run_cli(pretrain_args(tiny_run, run), capsys)
    assert status == 2 and len(errors) == 1
    assert errors[0].startswith(f"lmforge pretrain: error: run directory '{run}' is in use by another training run "
                                f"(pid {os.getpid()} on host {socket.gethostname()} since ")
    assert "--train.run_dir" in errors[0]
    assert not (run / "metrics.jsonl").exists() and ckpt.latest_checkpoint(run) is None  # wrote nothing


def test_the_lock_is_released_after_a_run_and_after_a_failed_one(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(pretrain_args(tiny_run, run, max_steps=2), capsys)[0] == 0
    assert (run / LOCK_FILE).read_text() == ""  # released and emptied: nothing to take over
    status, errors, _ = run_cli(pretrain_args(tiny_run, run, max_steps=6, **{"optim.lr": 1e4,
                                                                             "optim.warmup_steps": 0}), capsys)
    assert status == 2 and "training diverged" in errors[0]
    with RunLock(run) as lock:  # free again
        assert lock.took_over == ""


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    # What a SIGKILLed run leaves: its record in the file, the kernel's flock gone with the process.
    (run / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "node-7", "started": 0}))
    status, errors, output = run_cli(pretrain_args(tiny_run, run, max_steps=2), capsys)
    assert status == 0 and errors == []
    assert "took over the lock of a run that ended without releasing it (pid 999999 on host node-7" in output
    assert training_steps(run) == [1, 2]


def test_take_over_note_names_the_previous_holder(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 4242, "host": "node-7", "started": 0}))
    with RunLock(tmp_path) as lock:
        assert lock.took_over.startswith("pid 4242 on host node-7 since ")
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(ConfigError, match=f"in use by another training run \\(pid {os.getpid()} on host"):
            RunLock(tmp_path).acquire()


def test_two_processes_started_together_one_trains_the_other_stops_at_once(tiny_run, tmp_path):
    run = tmp_path / "run"
    # the run lasts 8 s of training, far longer than the two start-ups can differ
    argv = [sys.executable, "-m", "lmforge.cli"] + pretrain_args(tiny_run, run, max_steps=0, max_seconds=8,
                                                                 checkpoint_interval=10)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [(tmp_path / f"out{i}.txt").open("w+") for i in range(2)]  # files, not pipes: no full buffer
    procs = [subprocess.Popen(argv, stdout=log, stderr=log, text=True, env=env) for log in logs]
    results = []
    for proc, log in zip(procs, logs):
        status = proc.wait(timeout=300)
        log.seek(0)
        results.append((status, log.read()))
        log.close()
    statuses = sorted(status for status, _ in results)
    assert statuses == [0, 2], results
    loser = next(err for status, err in results if status == 2)
    error_lines = [line for line in loser.splitlines() if line.startswith("lmforge ")]
    assert len(error_lines) == 1 and "is in use by another training run (pid " in error_lines[0]
    assert "Traceback" not in loser
    # the winner's records are the only ones: each step once, and its summary names its own checkpoint
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "max_seconds" and summary["steps"] > 10
    assert training_steps(run) == list(range(1, summary["steps"] + 1))
    assert summary["checkpoint"] == str(ckpt.latest_checkpoint(run))
