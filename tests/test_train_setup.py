"""The loop's reusable parts: set-up, the task section of a run config, and ``train.init_from``."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from conftest import tiny_pretrain_config
from lmforge.errors import CheckpointError, ConfigError
from lmforge.tokenize import load_tokenizer
from lmforge.train import checkpoint as ckpt
from lmforge.train.loop import pretrain
from lmforge.train.nonfinite import NonFiniteGuard
from lmforge.train.parallel import World
from lmforge.train.setup import build_training
from lmforge.train.step import optimizer_step, set_learning_rate
from run_safety_helpers import pretrain_args, records, run_cli, training_steps


def test_set_up_and_one_step_are_callable_without_the_loop(tiny_run, tmp_path):
    """What a recipe with its own loop does: build the parts, draw batches, take steps."""
    training = build_training(tiny_pretrain_config(tiny_run, tmp_path / "run"), World())
    assert training.task_cfg.name == "causal_lm" and training.task_cfg.options == {"fused_loss": True}
    before = {k: v.clone() for k, v in training.model.state_dict().items()}
    set_learning_rate(training.optimizer, 1e-3)
    result = optimizer_step(training, training.data.next_step(), NonFiniteGuard(every_step=True), 1)
    assert result.updated and result.nonfinite is None and math.isfinite(float(result.loss))
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    assert float(result.loss) == pytest.approx(math.log(vocab_size), abs=0.1)  # a fresh model guesses uniformly
    assert not all(torch.equal(before[k], v) for k, v in training.model.state_dict().items())
    assert training.data.state_dict() == {"seed": 0, "position": 4}  # one global batch drawn


def test_the_run_config_and_checkpoint_name_the_task_with_every_option(tiny_run, tmp_path):
    run = tmp_path / "bert"
    cfg = tiny_pretrain_config(tiny_run, run, max_steps=2, **{"model.preset": "bert-tiny",
                                                                "task.options": {"mask_prob": 0.3}})
    summary = pretrain(cfg)
    assert summary["objective"] == "masked_lm"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["task"] == {"name": "masked_lm", "options": {"mask_prob": 0.3}}
    info = ckpt.read_checkpoint_info(ckpt.latest_checkpoint(run))
    assert (info.task.name, dict(info.task.options)) == ("masked_lm", {"mask_prob": 0.3})


def test_a_bad_task_option_is_one_line_before_the_run_starts(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    status, errors, _ = run_cli(pretrain_args(tiny_run, run, **{"task.options": "{mask_prob: 0.2}"}), capsys)
    assert status == 2 and errors == ["lmforge pretrain: error: unknown config key 'task.options.mask_prob': "
                                      "CausalLMOptions has fused_loss"]
    status, errors, _ = run_cli(pretrain_args(tiny_run, run, **{"task.name": "masked_lm",
                                                                "task.options": "{mask_prob: 2}"}), capsys)
    assert status == 2 and errors == ["lmforge pretrain: error: config key 'task.options.mask_prob': expected a "
                                      "number in (0, 1), got 2.0"]
    assert not run.exists()


def test_a_run_initialised_from_another_runs_checkpoint_starts_from_its_weights(tiny_run, tmp_path):
    first = pretrain(tiny_pretrain_config(tiny_run, tmp_path / "first"))
    cfg = tiny_pretrain_config(tiny_run, tmp_path / "second", init_from=str(tmp_path / "first"), max_steps=2)
    training = build_training(cfg, World())
    val = training.data.final_evaluation(training.model, training.device, "fp32")
    assert val["val_loss"] == first["val_loss"]  # the source's weights, exactly
    assert training.optimizer.state_dict()["state"] == {}  # a fresh optimiser

    summary = pretrain(cfg)
    assert summary["steps"] == 2 and training_steps(tmp_path / "second") == [1, 2]  # from step 0
    step_1 = records(tmp_path / "second")[0]
    assert step_1["loss"] < math.log(load_tokenizer(tiny_run["tokenizer"]).vocab_size) - 0.5  # not a fresh model
    assert step_1["lr"] == pytest.approx(cfg.optim.lr / cfg.optim.warmup_steps)  # the schedule starts again
    state = ckpt.load_trainer_state(ckpt.latest_checkpoint(tmp_path / "second"))
    assert state["step"] == 2 and state["tokens_seen"] == 2 * 4 * 32

    # the run's own checkpoint takes precedence: a restart resumes at step 2, not from the source
    resumed = pretrain(tiny_pretrain_config(tiny_run, tmp_path / "second", init_from=str(tmp_path / "first"),
                                            max_steps=4))
    assert resumed["steps"] == 4 and training_steps(tmp_path / "second") == [1, 2, 3, 4]


def test_init_from_refuses_model_options_that_contradict_the_source(tiny_run, tmp_path):
    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "first", max_steps=1))
    cfg = tiny_pretrain_config(tiny_run, tmp_path / "second", init_from=str(tmp_path / "first"),
                               **{"model.num_layers": 3})
    with pytest.raises(ConfigError, match=r"^train.init_from '.*first' fixes the model config, but "
                                          r"model.num_layers 3 \(the source has 2\): drop those model options$"):
        pretrain(cfg)
    with pytest.raises(ConfigError, match=r"^config key 'train.init_from': '.*nowhere' is not a directory: pass an "
                                          r"lmforge checkpoint or run directory, or an HF model directory"):
        pretrain(tiny_pretrain_config(tiny_run, tmp_path / "third", init_from=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        pretrain(tiny_pretrain_config(tiny_run, tmp_path / "fourth", init_from=str(tmp_path / "empty")))


def test_init_from_an_hf_directory(tiny_run, tmp_path):
    pytest.importorskip("transformers")
    from lmforge.interop.convert import export_hf

    first = pretrain(tiny_pretrain_config(tiny_run, tmp_path / "first", max_steps=4))
    export_hf(tmp_path / "first", tmp_path / "hf")
    cfg = tiny_pretrain_config(tiny_run, tmp_path / "second", init_from=str(tmp_path / "hf"), max_steps=1)
    training = build_training(cfg, World())
    val = training.data.final_evaluation(training.model, training.device, "fp32")
    assert val["val_loss"] == pytest.approx(first["val_loss"], abs=1e-5)
    assert training.optimizer.state_dict()["state"] == {}


def test_a_checkpoint_from_before_lr_scale_resumes_exactly(tiny_run, tmp_path):
    """Trainer states written before parameter groups had ``lr_scale`` (and before the rollback
    counters) resume to the same losses as an uninterrupted run."""
    full = pretrain(tiny_pretrain_config(tiny_run, tmp_path / "full", max_steps=4))
    cfg = tiny_pretrain_config(tiny_run, tmp_path / "old", max_steps=4)
    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "old", max_steps=2))
    path = ckpt.latest_checkpoint(tmp_path / "old") / ckpt.STATE_FILE
    state = torch.load(path, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        del group["lr_scale"]
    for key in ("horizon", "lr_scale", "rollbacks", "skipped_steps"):
        del state[key]
    torch.save(state, path)
    resumed = pretrain(cfg)
    losses = {r["step"]: r["loss"] for r in records(tmp_path / "full") if "loss" in r and not r.get("final")}
    assert {r["step"]: r["loss"] for r in records(tmp_path / "old") if "loss" in r and not r.get("final")} == losses
    assert resumed["val_loss"] == full["val_loss"]


def test_init_from_takes_the_family_and_its_task_from_the_source(tiny_run, tmp_path):
    from lmforge import config as C

    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "bert", max_steps=2, **{"model.preset": "bert-tiny"}))
    cfg = C.load_config(C.PretrainConfig, None, {  # no model options at all: the source's model, family and task
        "train.shards_dir": str(tiny_run["shards"]), "train.tokenizer_dir": str(tiny_run["tokenizer"]),
        "train.run_dir": str(tmp_path / "tuned"), "train.init_from": str(tmp_path / "bert"), "train.seq_len": 32,
        "train.batch_size": 4, "train.max_steps": 1, "train.device": "cpu"})
    summary = pretrain(cfg)
    assert summary["objective"] == "masked_lm" and summary["steps"] == 1
    assert ckpt.read_checkpoint_info(ckpt.latest_checkpoint(tmp_path / "tuned")).model.family == "bert"
