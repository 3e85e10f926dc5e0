"""SIGKILL a real training process at random moments, during steps and during saves, and resume.

Every kill is followed by a restart in the same run directory; the last restart runs to the
end. The run must then be the uninterrupted run, bit for bit: each step logged once with the
same loss, the same final weights, no temporary directory of a killed save left, and the
lock free.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.train import checkpoint as ckpt
from lmforge.train.run_lock import LOCK_FILE
from run_safety_helpers import pretrain_args, records

STEPS = 200  # about 4 s of training on 2 cores: the kills (at most 0.6 s apart) land well inside it
OPTIONS = dict(max_steps=STEPS, batch_size=16, checkpoint_interval=5, keep_last=2)


def start(tiny_run, run_dir: Path, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "lmforge.cli"] + pretrain_args(tiny_run, run_dir, **OPTIONS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same kernels in every process
    return subprocess.Popen(argv, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env)


def partial_saves(run_dir: Path) -> list[Path]:
    root = ckpt.checkpoints_dir(run_dir)
    return [p for p in root.iterdir() if p.name.startswith(ckpt.PARTIAL_PREFIX)] if root.is_dir() else []


def kill_during_a_step(proc: subprocess.Popen, log: Path, log_start: int, rng: random.Random) -> bool:
    """Kill at a random moment once this process has logged a training step; False if the run
    ended first."""
    while proc.poll() is None and "\nstep " not in log.read_text()[log_start:]:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.6))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def kill_during_a_save(proc: subprocess.Popen, run_dir: Path) -> bool:
    """Kill as soon as a save's temporary directory appears; False if the run ended first."""
    while proc.poll() is None:
        if partial_saves(run_dir):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
    return False


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_exact_and_leaves_nothing(tiny_run, tmp_path):
    reference = tmp_path / "reference"
    assert start(tiny_run, reference, tmp_path / "reference.log").wait(timeout=300) == 0

    run, log, rng = tmp_path / "killed", tmp_path / "killed.log", random.Random(0)
    kills = {"step": 0, "save": 0}
    leftovers_seen = 0
    for attempt in range(20):
        if kills["step"] >= 2 and kills["save"] >= 2:
            break
        kind = "save" if kills["save"] < 2 and attempt % 2 else "step" if kills["step"] < 2 else "save"
        log_start = len(log.read_text()) if log.exists() else 0
        proc = start(tiny_run, run, log)
        killed = kill_during_a_save(proc, run) if kind == "save" else kill_during_a_step(proc, log, log_start, rng)
        if not killed:
            assert proc.returncode == 0, log.read_text()[-2000:]
            pytest.fail(f"the run finished before {kills} kills; make it longer")
        kills[kind] += 1
        leftovers_seen += bool(partial_saves(run))
    assert kills == {"step": 2, "save": 2}
    assert leftovers_seen >= 1  # a kill during a save did leave a temporary directory...
    assert start(tiny_run, run, log).wait(timeout=300) == 0, log.read_text()[-2000:]
    assert partial_saves(run) == []  # ...which the next start removed
    assert (run / LOCK_FILE).read_text() == ""

    def per_step(run_dir):
        rows = [r for r in records(run_dir) if "loss" in r and not r.get("final")]
        assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # each step once
        return [r["loss"] for r in rows]

    assert per_step(run) == per_step(reference)  # bit-identical losses
    want = load_file(ckpt.latest_checkpoint(reference) / ckpt.MODEL_FILE)
    got = load_file(ckpt.latest_checkpoint(run) / ckpt.MODEL_FILE)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
