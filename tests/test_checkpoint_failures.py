"""Checkpoints under failure: full disks, leftovers of killed saves, files that load but are wrong, resumes
that change the model, and the records a resume leaves."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import uuid
import warnings

import pytest
import torch

from conftest import tiny_pretrain_config
from lmforge.train import checkpoint as ckpt
from lmforge.train.loop import pretrain
from run_safety_helpers import pretrain_args, records, run_cli, training_steps


def partial_saves(run_dir) -> list[str]:
    return [p.name for p in ckpt.checkpoints_dir(run_dir).iterdir() if p.name.startswith(ckpt.PARTIAL_PREFIX)]


def fail_on_call(n: int, error: Exception, real):
    """A stand-in for a writer that fails at its n-th call (1-based) and works otherwise."""
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise error
        return real(*args, **kwargs)

    return write


@pytest.mark.parametrize("writer, error, reason", [
    ("save_model", OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    # what torch.save says about a full disk when it is handed a path: no errno, its own words
    ("_save_torch", RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534\nmore"),
     "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
    ("save_model", PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
])
def test_a_failed_save_is_one_line_and_the_previous_checkpoint_stays(tiny_run, tmp_path, capsys, monkeypatch,
                                                                      writer, error, reason):
    monkeypatch.setattr(ckpt, writer, fail_on_call(2, error, getattr(ckpt, writer)))
    run = tmp_path / "run"
    status, errors, _ = run_cli(pretrain_args(tiny_run, run, checkpoint_interval=3), capsys)
    assert status == 2 and len(errors) == 1
    file = ckpt.MODEL_FILE if writer == "save_model" else ckpt.STATE_FILE
    final = ckpt.checkpoints_dir(run) / "step_00000006"  # the file's place, not the temporary directory
    assert errors[0].startswith(f"lmforge pretrain: error: could not write {final / file}: {reason}")
    assert ": free space or fix permissions there" in errors[0]
    assert "earlier checkpoints are unchanged" in errors[0]
    assert ckpt.latest_checkpoint(run).name == "step_00000003"
    ckpt.load_checkpoint(run)  # still loads
    assert partial_saves(run) == []  # the failed save's directory is gone


def _mount_tmpfs(path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_a_really_full_disk(tiny_run, tmp_path, capsys):
    """A 3 MiB tmpfs holds the run's first checkpoint (about 2 MiB) but not a second one."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "3m"):
        pytest.skip("mounting a tmpfs needs root and a mount command (the injected failures above still run)")
    try:
        run = disk / "run"
        status, errors, _ = run_cli(pretrain_args(tiny_run, run, checkpoint_interval=1, keep_last=3), capsys)
        assert status == 2 and len(errors) == 1
        assert f"could not write {ckpt.checkpoints_dir(run)}/step_" in errors[0]
        assert "(the disk is full: " in errors[0]
        newest = ckpt.latest_checkpoint(run)
        assert newest is not None
        ckpt.load_checkpoint(run)
        assert partial_saves(run) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_leftovers_of_a_killed_save_are_removed_at_the_next_start(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(pretrain_args(tiny_run, run, max_steps=4, checkpoint_interval=2), capsys)[0] == 0
    leftover = ckpt.checkpoints_dir(run) / f"{ckpt.PARTIAL_PREFIX}step_00000006-123-456"
    leftover.mkdir()
    (leftover / ckpt.MODEL_FILE).write_bytes(b"\0" * 1000)  # half a save
    status, _, output = run_cli(pretrain_args(tiny_run, run, max_steps=6, checkpoint_interval=2), capsys)
    assert status == 0 and not leftover.exists()
    assert "removed 1 unfinished checkpoint save(s) left by an interrupted run" in output


def _run_and_break(tiny_run, tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert run_cli(pretrain_args(tiny_run, run, max_steps=2), capsys)[0] == 0
    newest = ckpt.latest_checkpoint(run)
    damage(newest)
    return run, newest


@pytest.mark.parametrize("missing", ["sampler", "optimizer", "step"])
def test_a_trainer_state_without_a_key_is_one_line(tiny_run, tmp_path, capsys, missing):
    def drop_key(newest):
        state = torch.load(newest / ckpt.STATE_FILE, weights_only=True)
        del state[missing]
        torch.save(state, newest / ckpt.STATE_FILE)

    run, newest = _run_and_break(tiny_run, tmp_path, capsys, drop_key)
    status, errors, _ = run_cli(pretrain_args(tiny_run, run, max_steps=4), capsys)
    assert status == 2 and errors == [f"lmforge pretrain: error: checkpoint '{newest}' has a wrong "
                                      f"{ckpt.STATE_FILE} (no '{missing}'): delete that checkpoint to resume "
                                      "from an earlier one"]


def test_a_trainer_state_that_would_run_code_is_refused_in_one_line(tiny_run, tmp_path, capsys):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    def poison(newest):
        with open(newest / ckpt.STATE_FILE, "wb") as file:
            pickle.dump({"step": Payload()}, file)

    run, newest = _run_and_break(tiny_run, tmp_path, capsys, poison)
    with warnings.catch_warnings(record=True) as warned:  # what a user would see on stderr
        warnings.simplefilter("always")
        status, errors, output = run_cli(pretrain_args(tiny_run, run, max_steps=4), capsys)
    assert status == 2 and len(errors) == 1 and not marker.exists()
    assert [str(w.message) for w in warned if "pickle" in str(w.message)] == []
    assert errors[0].startswith(f"lmforge pretrain: error: checkpoint '{newest}' has an unreadable "
                                f"{ckpt.STATE_FILE} (")
    assert "please file an issue" not in output


@pytest.mark.parametrize("verb", ["evaluate", "generate", "convert"])
def test_a_config_json_with_a_wrong_value_is_one_line(tiny_run, tmp_path, capsys, verb):
    def corrupt(newest):
        config = json.loads((newest / ckpt.CONFIG_FILE).read_text())
        config["model"]["dim"] = "sixty-four"
        (newest / ckpt.CONFIG_FILE).write_text(json.dumps(config))

    run, newest = _run_and_break(tiny_run, tmp_path, capsys, corrupt)
    argv = {"evaluate": ["evaluate", newest, "--data", tiny_run["shards"], "--device", "cpu"],
            "generate": ["generate", newest, "--prompt", "x", "--device", "cpu"],
            "convert": ["convert", newest, "--out_dir", tmp_path / "hf"]}[verb]
    status, errors, _ = run_cli(argv, capsys)
    assert status == 2 and len(errors) == 1
    assert errors[0].startswith(f"lmforge {verb}: error: checkpoint '{newest}' has a wrong {ckpt.CONFIG_FILE}: "
                                "config key 'model.dim': expected an integer")


def test_a_resume_with_another_model_config_names_the_keys_that_differ(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(pretrain_args(tiny_run, run, max_steps=2), capsys)[0] == 0
    status, errors, _ = run_cli(pretrain_args(tiny_run, run, max_steps=4, **{"model.num_layers": 3,
                                                                             "model.dim": 96}), capsys)
    assert status == 2 and len(errors) == 1
    assert "was trained with another model config (model.dim 64 -> 96; model.num_layers 2 -> 3; " in errors[0]
    assert "--train.resume false" in errors[0]


def test_a_resume_logs_each_step_once(tiny_run, tmp_path):
    full = tmp_path / "full"
    pretrain(tiny_pretrain_config(tiny_run, full))
    crashed = tmp_path / "crashed"
    cfg = tiny_pretrain_config(tiny_run, crashed, checkpoint_interval=4)

    def crash_after_6(step, record):
        if step == 6:
            raise KeyboardInterrupt  # steps 5 and 6 were logged after the step-4 checkpoint

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, on_step=crash_after_6)
    assert training_steps(crashed) == [1, 2, 3, 4, 5, 6]
    pretrain(cfg)
    assert training_steps(crashed) == list(range(1, 9))  # 5 and 6 once, from the resumed run
    want = {r["step"]: r["loss"] for r in records(full) if "loss" in r}
    got = {r["step"]: r["loss"] for r in records(crashed) if "loss" in r}
    assert got == want
