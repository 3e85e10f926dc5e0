"""Non-finite losses and gradients: caught at their step, handled by train.on_nonfinite, never saved."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_pretrain_config
from lmforge.config import ModelConfig, load_config
from lmforge.errors import CheckpointError, TrainingError
from lmforge.models import build_model
from lmforge.train import checkpoint as ckpt
from lmforge.train import loop
from lmforge.train.nonfinite import NonFinite, NonFiniteGuard
from lmforge.train.schedule import lr_at
from lmforge.train.tasks import CausalLMTask
from run_safety_helpers import pretrain_args, records, run_cli, training_steps


def all_finite(ckpt_dir) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(ckpt_dir / ckpt.MODEL_FILE).values())


@pytest.fixture
def nan_at(monkeypatch):
    """`nan_at(calls)`: the causal-LM task's loss is NaN at those loss calls (1-based; one call per step here)."""

    def install(calls) -> list[int]:
        seen: list[int] = []
        real_loss = CausalLMTask.loss

        def loss(self, model, batch):
            value, metrics = real_loss(self, model, batch)
            seen.append(len(seen) + 1)
            return (value * math.nan if seen[-1] in calls else value), metrics

        monkeypatch.setattr(CausalLMTask, "loss", loss)
        return seen

    return install


def test_a_diverging_learning_rate_stops_with_one_line_and_saves_nothing_non_finite(tiny_run, tmp_path, capsys):
    """The hostile user's run: --optim.lr 1e4 --optim.warmup_steps 0."""
    run = tmp_path / "run"
    status, errors, _ = run_cli(pretrain_args(tiny_run, run, max_steps=20, checkpoint_interval=1,
                                              **{"optim.lr": 1e4, "optim.warmup_steps": 0}), capsys)
    assert status == 2 and len(errors) == 1
    assert errors[0].startswith("lmforge pretrain: error: training diverged: non-finite values at step ")
    bad_step = next(r["step"] for r in records(run) if r.get("nonfinite"))
    assert f"at step {bad_step} (" in errors[0]
    saved = sorted(ckpt.checkpoints_dir(run).iterdir())
    assert saved and all(all_finite(p) for p in saved)  # every checkpoint written is finite...
    assert ckpt.latest_checkpoint(run).name == f"step_{bad_step - 1:08d}"  # ...and the newest is the last good step
    assert f"the newest checkpoint, step_{bad_step - 1:08d}, is from before it" in errors[0]
    assert run_cli(["evaluate", run, "--data", tiny_run["shards"], "--device", "cpu"], capsys)[0] == 0


def test_skip_drops_the_update_and_counts_it(tiny_run, tmp_path, nan_at, monkeypatch):
    import lmforge.models

    nan_at({3, 5})
    built, weights = [], {}
    real_build = lmforge.models.build_model
    monkeypatch.setattr(lmforge.models, "build_model",
                        lambda cfg, head=None: built.append(real_build(cfg, head)) or built[-1])

    def snapshot(step, record):
        weights[step] = {k: v.clone() for k, v in built[0].state_dict().items()}

    summary = loop.pretrain(tiny_pretrain_config(tiny_run, tmp_path / "run", on_nonfinite="skip"), on_step=snapshot)
    assert summary["steps"] == 8 and summary["skipped_steps"] == 2
    by_step = {r["step"]: r for r in records(tmp_path / "run") if "loss" in r}
    assert by_step[3]["skipped"] and by_step[5]["skipped_steps"] == 2 and "skipped" not in by_step[4]
    for step in (3, 5):  # the update of a skipped step is dropped: the weights are those of the step before
        assert all(torch.equal(weights[step][k], weights[step - 1][k]) for k in weights[step])
    assert not all(torch.equal(weights[4][k], weights[3][k]) for k in weights[4])  # others do update
    assert training_steps(tmp_path / "run") == list(range(1, 9))
    assert all_finite(ckpt.latest_checkpoint(tmp_path / "run"))


def test_rollback_reloads_the_checkpoint_and_goes_on_at_a_lower_learning_rate(tiny_run, tmp_path, nan_at):
    calls = nan_at({6})  # step 6 the first time round
    cfg = tiny_pretrain_config(tiny_run, tmp_path / "run", on_nonfinite="rollback", checkpoint_interval=4,
                               rollback_lr_factor=0.25)
    summary = loop.pretrain(cfg)
    assert summary["steps"] == 8 and summary["rollbacks"] == 1
    assert len(calls) == 10  # steps 1-6, then 5-8 again from the step-4 checkpoint
    notes = [r for r in records(tmp_path / "run") if "rollback" in r]
    assert notes == [{"step": 4, "rollback": 1, "lr_scale": 0.25}]
    assert training_steps(tmp_path / "run") == list(range(1, 9))  # each step once: the undone ones re-logged
    lrs = {r["step"]: r["lr"] for r in records(tmp_path / "run") if "lr" in r}
    for step in range(1, 9):  # logged lr of step s is the schedule's at s-1, scaled after the rollback
        expected = lr_at(step - 1, cfg.optim, 8) * (0.25 if step > 4 else 1.0)
        assert lrs[step] == pytest.approx(expected, rel=1e-12), step
    assert all_finite(ckpt.latest_checkpoint(tmp_path / "run"))
    state = ckpt.load_trainer_state(ckpt.latest_checkpoint(tmp_path / "run"))
    assert state["lr_scale"] == 0.25 and state["rollbacks"] == 1  # a resume keeps them


def test_rollback_before_the_first_interval_checkpoint_goes_back_to_step_0(tiny_run, tmp_path, nan_at):
    nan_at({2})
    summary = loop.pretrain(tiny_pretrain_config(tiny_run, tmp_path / "run", on_nonfinite="rollback"))
    assert summary["steps"] == 8 and summary["rollbacks"] == 1
    assert [r for r in records(tmp_path / "run") if "rollback" in r][0]["step"] == 0


def test_rollback_gives_up_after_max_rollbacks(tiny_run, tmp_path, nan_at):
    nan_at(set(range(3, 100)))  # diverges every time from step 3 on
    cfg = tiny_pretrain_config(tiny_run, tmp_path / "run", on_nonfinite="rollback", max_rollbacks=2,
                               checkpoint_interval=1)
    with pytest.raises(TrainingError, match=r"non-finite values at step 3 .* after 2 rollback\(s\) "
                                            r"\(--train.max_rollbacks 2\); the newest checkpoint, step_00000002"):
        loop.pretrain(cfg)


def test_the_deferred_guard_reports_the_first_bad_step_once():
    """The accelerator mode: nothing is read until `pending`, which names the first bad step."""
    guard = NonFiniteGuard(every_step=False)
    values = [(1.0, 2.0), (3.0, math.inf), (math.nan, 1.0), (1.0, 1.0)]
    for step, (loss, norm) in enumerate(values, start=1):
        assert guard.observe(step, torch.tensor(loss), torch.tensor(norm)) is None
    assert guard.pending() == NonFinite(2, 3.0, math.inf)
    assert guard.pending() is None  # reported once
    guard.observe(5, torch.tensor(1.0), torch.tensor(1.0))
    assert guard.pending() is None


def test_the_every_step_guard_answers_at_once_and_fp16_leaves_gradients_to_the_scaler():
    guard = NonFiniteGuard(every_step=True)
    assert guard.observe(1, torch.tensor(1.0), torch.tensor(1.0)) is None
    assert guard.observe(2, torch.tensor(1.0), torch.tensor(math.inf)) == NonFinite(2, 1.0, math.inf)
    scaled = NonFiniteGuard(every_step=True, watch_gradients=False)
    assert scaled.observe(1, torch.tensor(1.0), torch.tensor(math.inf)) is None  # the scaler skips it
    event = scaled.observe(2, torch.tensor(math.nan), torch.tensor(1.0))
    assert event is not None and event.step == 2 and math.isnan(event.loss)


def test_saving_refuses_non_finite_weights_and_leaves_nothing(tiny_run, tmp_path):
    model = build_model(load_config(ModelConfig, None, {"preset": "llama-tiny", "vocab_size": 320}))
    with torch.no_grad():
        next(model.parameters())[0, 0] = math.nan
    with pytest.raises(CheckpointError, match="refusing to write .*holds a NaN or an infinity"):
        ckpt.save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"],
                             {"optimizer": {}, "step": 1})
    assert list(ckpt.checkpoints_dir(tmp_path / "run").iterdir()) == []


def test_evaluate_and_generate_refuse_a_non_finite_checkpoint(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(pretrain_args(tiny_run, run, max_steps=2), capsys)[0] == 0
    poisoned = tmp_path / "poisoned"
    shutil.copytree(ckpt.latest_checkpoint(run), poisoned)
    weights = load_file(poisoned / ckpt.MODEL_FILE)
    name = sorted(weights)[0]
    weights[name][..., 0] = math.inf
    save_file(weights, str(poisoned / ckpt.MODEL_FILE))
    for argv in (["evaluate", poisoned, "--data", tiny_run["shards"], "--device", "cpu"],
                 ["generate", poisoned, "--prompt", "def alpha(", "--device", "cpu"]):
        status, errors, output = run_cli(argv, capsys)
        assert status == 2 and len(errors) == 1, output
        assert f"checkpoint '{poisoned}' has non-finite weights ('{name}' holds a NaN or an infinity" in errors[0]
        assert "def alpha(" not in output  # generate prints nothing before the error


def test_config_values_that_must_be_finite_are(tiny_run, tmp_path, capsys):
    for option, value in (("optim.lr", "1e999"), ("optim.lr", ".nan"), ("model.norm_eps", ".nan")):
        status, errors, _ = run_cli(pretrain_args(tiny_run, tmp_path / "run", **{option: value}), capsys)
        assert status == 2 and len(errors) == 1 and f"config key '{option}'" in errors[0], (option, errors)
    assert not (tmp_path / "run").exists()
