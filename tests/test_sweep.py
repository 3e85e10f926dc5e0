"""`lmforge sweep`: search-space checks, trials, pruning, failures, resume, parallel workers, report.

Most tests run a *fake* command (``fake_run`` below, registered as command "fake" on
PretrainConfig) whose periodic and final val_loss are set by the trial's learning rate, so the
outcome of every trial is known in advance. One test runs real tiny pretraining trials.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from lmforge import config as C
from lmforge.errors import ConfigError, TrainingError
from lmforge.sweep import SweepConfig
from lmforge.sweep.commands import COMMANDS, Command
from lmforge.sweep.plan import make_plan
from lmforge.sweep.run import run_sweep

optuna = pytest.importorskip("optuna")

CALLS: list[float] = []  # the lr of each fake run, in this process
CRASH_ON_CALL = {"n": 0}  # fake_run raises a RuntimeError (a bug, not a user error) on this call (0: never)
ABSURD_LR, FAILING_LR = 5.0, 0.5


def fake_run(cfg: C.PretrainConfig, on_step=None) -> dict:
    """A stand-in for `pretrain`: val_loss 1 + lr at every evaluation, except 50 for an absurd
    lr (>= 5); lr 0.5 raises TrainingError at step 2 (a user error). Writes who ran it."""
    import torch

    CALLS.append(cfg.optim.lr)
    if CRASH_ON_CALL["n"] == len(CALLS):
        raise RuntimeError("simulated bug")
    run_dir = Path(cfg.train.run_dir)
    (run_dir / "ran.json").write_text(json.dumps({"pid": os.getpid(), "threads": torch.get_num_threads()}))
    value = 50.0 if cfg.optim.lr >= ABSURD_LR else 1.0 + cfg.optim.lr
    for step in range(1, cfg.train.max_steps + 1):
        if cfg.optim.lr == FAILING_LR and step == 2:
            raise TrainingError("training diverged (simulated)")
        record = {"step": step, "loss": value}
        if step % cfg.train.eval_interval == 0:
            record["val_loss"] = value
        if on_step is not None:
            on_step(step, record)
    return {"steps": cfg.train.max_steps, "val_loss": value, "val_perplexity": 2.0, "objective": "fake"}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(COMMANDS, "fake", Command("lmforge.config:PretrainConfig", "test_sweep:fake_run"))
    CALLS.clear()
    CRASH_ON_CALL["n"] = 0
    return CALLS


def sweep_config(run_dir: Path, space: dict, **values) -> SweepConfig:
    base = {"command": "fake", "run_dir": str(run_dir), "space": space, "trials": 4,
            "overrides": {"train.max_steps": 6, "train.eval_interval": 2, "model.vocab_size": 256}}
    return C.load_config(SweepConfig, None, {**base, **values})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- the search space


@pytest.mark.parametrize("space, message", [
    ({"optim.lrr": {"low": 1e-4, "high": 1e-2}}, r"'space.optim.lrr': PretrainConfig has no field 'optim.lrr'; "
                                                  r"did you mean optim.lr"),
    ({"optim": {"low": 1, "high": 2}}, r"'space.optim' is a section of PretrainConfig, not a field"),
    ({"optim.lr": {"low": 0.1, "high": 0.01}}, r"'space.optim.lr': low must be below high"),
    ({"optim.lr": {"low": 0.0, "high": 0.1, "log": True}}, r"a log range needs low > 0, got 0.0"),
    ({"optim.lr": {"low": 1e-4, "high": 0.1, "log": True, "step": 0.01}}, r"log and step cannot be combined"),
    ({"model.num_layers": {"low": 1.5, "high": 4}}, r"model.num_layers is an integer field"),
    ({"optim.name": {"low": 1, "high": 2}}, r"the field takes one of 'sgd', .* give \{choices"),
    ({"optim.lr": {"choices": []}}, r"'space.optim.lr.choices': expected a non-empty list"),
    ({"optim.lr": {"low": 1e-4}}, r"a range needs low and high \(missing high\)"),
    ({"optim.lr": {"low": 1e-4, "high": 1e-2, "scale": "log"}}, r"unknown entry 'scale'"),
    ({"optim.lr": [1e-4, 1e-2]}, r"expected a mapping \{low, high, log, step\}"),
    ({"train.run_dir": {"choices": ["a", "b"]}}, r"set the sweep's run_dir instead"),
    ({}, r"'space' is empty"),
])
def test_a_malformed_space_is_one_error_naming_the_key(tmp_path, space, message):
    with pytest.raises(ConfigError, match=message):
        C.load_config(SweepConfig, None, {"space": space, "run_dir": str(tmp_path)})


@pytest.mark.parametrize("space, message", [
    # values the field's own check refuses: found before any trial, by building the config
    ({"optim.lr": {"low": 0.0, "high": 0.1}}, r"'space.optim.lr': its low \(0.0\) is refused: config key "
                                               r"'optim.lr': expected a positive finite number"),
    ({"optim.name": {"choices": ["adamw", "adamx"]}}, r"'space.optim.name': its choice 1 \(\"adamx\"\) is refused"),
    ({"optim.beta2": {"low": 0.9, "high": 1.0}}, r"its high \(1.0\) is refused: .*'optim.beta2'"),
    ({"optim.lr": {"choices": [0.001, "1e-3"]}}, r"a value is given twice"),
])
def test_space_values_the_field_refuses_fail_before_any_trial(tmp_path, fake, space, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(sweep_config(tmp_path, space))
    assert fake == [] and not (tmp_path / "study.db").exists()


def test_space_types_follow_the_config_fields(tmp_path, fake):
    plan = make_plan(sweep_config(tmp_path, {
        "optim.lr": {"low": "1e-4", "high": 1, "log": True},  # YAML reads 1e-4 (no dot) as text: accepted
        "model.num_layers": {"low": 1, "high": 4, "step": 1},
        "optim.warmup_steps": {"low": 0, "high": 20, "step": 5},
        "optim.eps": {"choices": ["1e-8", 1e-6]},
        "task.options.mask_prob": {"low": 0.1, "high": 0.3},  # a key under a mapping field
        "optim.module_lr_scales": {"choices": [{}, {"output.*": 2.0}]},
    }))
    lr, layers, warmup, eps, mask, scales = plan.params
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-4, 1.0, True)  # float: the field's type
    assert (layers.kind, layers.low, layers.high) == ("int", 1, 4)
    assert (warmup.kind, warmup.step) == ("int", 5)
    assert eps.choices == (1e-8, 1e-6)  # as the config holds them
    assert (mask.kind, mask.low, mask.high) == ("float", 0.1, 0.3)
    # a mapping choice goes to Optuna as JSON text and comes back as the mapping
    assert scales.encoded_choices() == ("{}", '{"output.*": 2.0}')
    trial = optuna.trial.FixedTrial({"optim.module_lr_scales": '{"output.*": 2.0}', "model.num_layers": 3})
    assert scales.suggest(trial) == {"output.*": 2.0}
    assert layers.suggest(trial) == 3


def test_the_sweep_quickstart_recipe_loads_and_its_space_checks(monkeypatch):
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)  # its recipe path is relative to the repository
    cfg = C.load_config(SweepConfig, root / "configs" / "sweep-quickstart.yaml")
    plan = make_plan(cfg)
    assert [(p.key, p.kind, p.log) for p in plan.params] == [("optim.lr", "float", True),
                                                            ("optim.warmup_steps", "int", False)]
    base = plan.build({}, plan.trial_dir(0))
    assert (base.model.dim, base.train.max_steps, base.train.eval_interval) == (64, 40, 10)
    assert base.train.eval_interval < base.train.max_steps  # the pruner sees intermediate values


def test_a_key_both_searched_and_fixed_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"'space.optim.lr' is also set in overrides"):
        C.load_config(SweepConfig, None, {"space": {"optim.lr": {"low": 1e-4, "high": 1e-2}},
                                          "overrides": {"optim": {"lr": 1e-3}}})  # a nested section counts too


def test_an_unknown_override_or_command_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match=r"'overrides.train.max_step': PretrainConfig has no field .* "
                                          r"did you mean train.max_steps"):
        C.load_config(SweepConfig, None, {"space": {"optim.lr": {"low": 1e-4, "high": 1e-2}},
                                          "overrides": {"train.max_step": 3}})
    with pytest.raises(ConfigError, match=r"'command': expected a command a sweep can run, got 'pretrian'"):
        C.load_config(SweepConfig, None, {"command": "pretrian"})


# --------------------------------------------------------------------------- trials (fake command)


def test_pruning_stops_a_clearly_bad_trial_at_its_first_evaluation(tmp_path, fake):
    """Median pruner, 1 startup trial, no warmup: once a good trial (val_loss 1 + lr) has completed,
    a trial with an absurd lr (val_loss 50 at step 2) is worse than the median at step 2 and is
    pruned there; good trials (all 1.01, never worse than the median) complete. Seed 1 of the
    random sampler draws a good lr first."""
    cfg = sweep_config(tmp_path, {"optim.lr": {"choices": [0.01, ABSURD_LR]}}, trials=6, sampler="random",
                       seed=1, pruner={"name": "median", "startup_trials": 1, "warmup_steps": 0})
    summary = run_sweep(cfg)
    rows = read_csv(tmp_path / "results.csv")
    assert float(rows[0]["optim.lr"]) != ABSURD_LR  # the set-up this test relies on
    absurd = [r for r in rows if float(r["optim.lr"]) == ABSURD_LR]
    good = [r for r in rows if float(r["optim.lr"]) != ABSURD_LR]
    assert absurd and good
    assert all(r["state"] == "pruned" and r["steps"] == "2" and float(r["val_loss"]) == 50.0 for r in absurd)
    assert all(r["state"] == "complete" and r["steps"] == "6" for r in good)
    assert summary["trials"] == {"complete": len(good), "pruned": len(absurd), "failed": 0}
    assert summary["best_value"] == pytest.approx(1.01) and summary["best_params"] == {"optim.lr": 0.01}


def test_no_pruning_with_pruner_none(tmp_path, fake):
    cfg = sweep_config(tmp_path, {"optim.lr": {"choices": [0.01, ABSURD_LR]}}, trials=4, sampler="random",
                       seed=2, pruner={"name": "none"})
    summary = run_sweep(cfg)
    assert summary["trials"] == {"complete": 4, "pruned": 0, "failed": 0}


def test_a_user_error_fails_the_trial_and_the_study_goes_on(tmp_path, fake):
    cfg = sweep_config(tmp_path, {"optim.lr": {"choices": [0.01, FAILING_LR]}}, trials=5, sampler="random",
                       seed=0, pruner={"name": "none"})
    summary = run_sweep(cfg)
    rows = read_csv(tmp_path / "results.csv")
    failed = [r for r in rows if r["state"] == "failed"]
    assert len(rows) == 5 and failed and len(failed) < 5
    assert all(float(r["optim.lr"]) == FAILING_LR and r["error"] == "training diverged (simulated)"
               and r["steps"] == "1" for r in failed)
    assert summary["trials"]["failed"] == len(failed) and summary["trials"]["complete"] == 5 - len(failed)
    assert "training diverged (simulated)" in (tmp_path / "results.md").read_text()


def test_when_no_trial_completes_the_report_is_written_and_the_sweep_fails(tmp_path, fake):
    cfg = sweep_config(tmp_path, {"optim.lr": {"choices": [FAILING_LR]}}, trials=2)
    with pytest.raises(TrainingError, match=r"no trial of the sweep completed \(0 pruned, 2 failed\): see "):
        run_sweep(cfg)
    assert [r["state"] for r in read_csv(tmp_path / "results.csv")] == ["failed", "failed"]
    assert not (tmp_path / "best_config.yaml").exists()


def test_a_sweep_whose_first_trials_all_fail_alike_stops_after_three(tmp_path, fake):
    cfg = sweep_config(tmp_path, {"optim.lr": {"choices": [FAILING_LR]}}, trials=8)
    with pytest.raises(TrainingError, match=r"the study's first 3 trials all failed the same way, so the sweep stops "
                                            r"\(rerun it once fixed\): training diverged \(simulated\)"):
        run_sweep(cfg)
    assert len(fake) == 3
    assert [r["state"] for r in read_csv(tmp_path / "results.csv")] == ["failed"] * 3  # the report is written


def test_a_metric_the_summary_lacks_stops_the_sweep_naming_what_it_has(tmp_path, fake):
    cfg = sweep_config(tmp_path, {"optim.lr": {"low": 0.01, "high": 0.1}}, trials=3, metric="val_acuracy")
    with pytest.raises(ConfigError, match=r"'metric': the fake summary has no number 'val_acuracy'; it has "
                                          r"steps, val_loss, val_perplexity"):
        run_sweep(cfg)
    assert len(fake) == 1  # the first trial told it; no more were run


def test_the_report_table_best_config_and_plot(tmp_path, fake, capsys):
    """direction maximize: the best trial is the one with the highest value; best_config.yaml is
    the recipe + overrides + its values, loadable by `lmforge pretrain --config`."""
    cfg = sweep_config(tmp_path, {"optim.lr": {"choices": [0.01, 0.02, 0.03]},
                                  "model.num_layers": {"low": 1, "high": 3}}, trials=4, direction="maximize",
                       pruner={"name": "none"})
    summary = run_sweep(cfg)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(summary))
    rows = read_csv(tmp_path / "results.csv")
    assert list(rows[0]) == ["trial", "state", "val_loss", "optim.lr", "model.num_layers", "steps", "seconds", "error"]
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    for row, lr in zip(rows, fake):  # the value is 1 + lr, lr the one the trial ran with
        assert float(row["val_loss"]) == pytest.approx(1 + lr, rel=1e-5) and float(row["optim.lr"]) == lr
    best = max(rows, key=lambda r: (float(r["val_loss"]), -int(r["trial"])))
    assert summary["best_trial"] == int(best["trial"]) and summary["best_value"] == pytest.approx(1 + summary[
        "best_params"]["optim.lr"])
    loaded = C.load_config(C.PretrainConfig, tmp_path / "best_config.yaml")
    assert loaded.optim.lr == summary["best_params"]["optim.lr"] == float(best["optim.lr"])
    assert loaded.model.num_layers == summary["best_params"]["model.num_layers"] == int(best["model.num_layers"])
    assert (loaded.train.max_steps, loaded.model.vocab_size) == (6, 256)  # the overrides
    assert loaded.train.run_dir == str(tmp_path / "best")
    md = (tmp_path / "results.md").read_text()
    assert f"best: trial {best['trial']}, val_loss {float(best['val_loss']):.4f}" in md
    assert md.count("| complete |") == 4
    assert (tmp_path / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_optuna_the_sweep_says_which_extra_to_install(tmp_path, fake, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(ConfigError, match=r"lmforge sweep needs Optuna: pip install 'lmforge\[finetune\]'"):
        run_sweep(sweep_config(tmp_path, {"optim.lr": {"low": 0.01, "high": 0.1}}))
    assert fake == []


# --------------------------------------------------------------------------- resume


def test_a_rerun_continues_the_study_and_runs_only_the_missing_trials(tmp_path, fake):
    space = {"optim.lr": {"low": 0.01, "high": 0.1, "log": True}}
    first = run_sweep(sweep_config(tmp_path, space, trials=3))
    assert len(fake) == 3 and sum(first["trials"].values()) == 3
    run_sweep(sweep_config(tmp_path, space, trials=3))
    assert len(fake) == 3  # nothing missing: no trial ran
    more = run_sweep(sweep_config(tmp_path, space, trials=5))
    assert len(fake) == 5 and sum(more["trials"].values()) == 5
    rows = read_csv(tmp_path / "results.csv")
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3, 4]
    assert len({r["optim.lr"] for r in rows}) == 5  # the rerun's sampler drew new values
    # the study's values are the trials' own: trial 3 ran with the lr the CSV shows
    assert float(rows[3]["optim.lr"]) == pytest.approx(fake[3], rel=1e-5)


def test_a_rerun_with_another_space_or_base_config_is_refused(tmp_path, fake):
    space = {"optim.lr": {"low": 0.01, "high": 0.1, "log": True}}
    run_sweep(sweep_config(tmp_path, space, trials=2))
    with pytest.raises(ConfigError, match=r"study 'sweep' in sqlite:///.* was run with space.optim.lr.high = 0.1, "
                                          r"this sweep has 0.2: its trials are not comparable"):
        run_sweep(sweep_config(tmp_path, {"optim.lr": {"low": 0.01, "high": 0.2, "log": True}}, trials=3))
    changed = sweep_config(tmp_path, space, trials=3)
    changed.overrides["optim.weight_decay"] = 0.0
    with pytest.raises(ConfigError, match=r"was run with base.optim.weight_decay = 0.1, this sweep has 0.0"):
        run_sweep(changed)
    # the recipe's own value of a searched key is never used: changing it is no change
    changed = sweep_config(tmp_path, space, trials=2)
    changed.overrides["optim.lr"] = 0.5
    run_sweep(changed)
    # another study name in the same storage is a new study
    run_sweep(sweep_config(tmp_path, {"optim.lr": {"low": 0.01, "high": 0.2}}, trials=1, study_name="wider"))
    assert len(fake) == 3


def test_an_interrupted_trial_is_not_counted_and_runs_again(tmp_path, fake):
    space = {"optim.lr": {"low": 0.01, "high": 0.1}}
    CRASH_ON_CALL["n"] = 2  # a bug in the second trial stops the sweep with its traceback
    with pytest.raises(RuntimeError, match="simulated bug"):
        run_sweep(sweep_config(tmp_path, space, trials=3))
    CRASH_ON_CALL["n"] = 0
    # a sweep killed mid-trial leaves a RUNNING trial in the storage: simulate one
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path / 'study.db'}")
    study.ask()
    summary = run_sweep(sweep_config(tmp_path, space, trials=3))
    rows = read_csv(tmp_path / "results.csv")
    assert [r["state"] for r in rows] == ["complete", "interrupted", "interrupted", "complete", "complete"]
    assert rows[1]["error"] == "interrupted: RuntimeError: simulated bug"
    assert summary["trials"] == {"complete": 3, "pruned": 0, "failed": 0}
    assert len(fake) == 2 + 2


def test_a_second_sweep_in_the_same_directory_is_refused(tmp_path, fake):
    from lmforge.train.run_lock import RunLock

    lock = RunLock(tmp_path).acquire()
    try:
        with pytest.raises(ConfigError, match=r"sweep directory '.*' is in use by another sweep"):
            run_sweep(sweep_config(tmp_path, {"optim.lr": {"low": 0.01, "high": 0.1}}))
    finally:
        lock.release()
    assert fake == []


# --------------------------------------------------------------------------- parallel


@pytest.mark.slow
def test_parallel_workers_share_the_study_and_run_exactly_the_requested_trials(tmp_path, fake):
    from lmforge.sweep.study import available_cores

    summary = run_sweep(sweep_config(tmp_path, {"optim.lr": {"low": 0.01, "high": 0.1}}, trials=5, parallel=2,
                                     pruner={"name": "none"}))
    assert summary["trials"] == {"complete": 5, "pruned": 0, "failed": 0}
    assert fake == []  # nothing ran in this process
    ran = [json.loads((tmp_path / f"trial_{n:04d}" / "ran.json").read_text()) for n in range(5)]
    assert not (tmp_path / "trial_0005").exists()
    pids = {r["pid"] for r in ran}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {r["threads"] for r in ran} == {max(1, available_cores() // 2)}
    assert len({r["optim.lr"] for r in read_csv(tmp_path / "results.csv")}) == 5  # workers drew apart


# --------------------------------------------------------------------------- real pretraining trials


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine a tiny model's matmuls are ~10x faster so."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_pretrain_sweep_writes_results_best_config_and_plot(tiny_run, tmp_path, capsys, one_thread):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"preset": "llama-tiny", "dim": 32, "num_layers": 2, "max_seq_len": 16, "vocab_size": 0},
        "optim": {"warmup_steps": 1},
        "train": {"shards_dir": str(tiny_run["shards"]), "tokenizer_dir": str(tiny_run["tokenizer"]),
                  "seq_len": 16, "batch_size": 2, "max_steps": 4, "eval_interval": 2, "eval_batches": 1,
                  "log_interval": 1, "device": "cpu", "seed": 0}}))
    cfg = C.load_config(SweepConfig, None, {
        "recipe": str(recipe), "run_dir": str(tmp_path / "sweep"), "trials": 3, "pruner": {"name": "none"},
        "space": {"optim.lr": {"low": 1e-3, "high": 3e-2, "log": True}, "model.num_kv_heads": {"choices": [2, 4]}}})
    summary = run_sweep(cfg)
    out = tmp_path / "sweep"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(summary))
    rows = read_csv(out / "results.csv")
    assert [r["state"] for r in rows] == ["complete"] * 3 and summary["trials"]["complete"] == 3
    for row in rows:  # each row is its trial's own run: the metric is that run's summary.json val_loss
        run = json.loads((out / f"trial_{int(row['trial']):04d}" / "summary.json").read_text())
        assert float(row["val_loss"]) == pytest.approx(run["val_loss"], rel=1e-5) and run["steps"] == 4
        ran = C.load_config(C.PretrainConfig, out / f"trial_{int(row['trial']):04d}" / "config.yaml")
        assert ran.optim.lr == pytest.approx(float(row["optim.lr"]), rel=1e-5)
        assert ran.model.num_kv_heads == int(row["model.num_kv_heads"]) and ran.train.max_steps == 4
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert summary["best_trial"] == int(best["trial"])
    assert summary["best_value"] == pytest.approx(float(best["val_loss"]), rel=1e-5)
    loaded = C.load_config(C.PretrainConfig, out / "best_config.yaml")
    assert loaded.optim.lr == summary["best_params"]["optim.lr"]
    assert loaded.model.num_kv_heads == summary["best_params"]["model.num_kv_heads"]
    assert loaded.train.run_dir == str(out / "best") and loaded.train.max_steps == 4 and loaded.model.dim == 32
    md = (out / "results.md").read_text()
    assert f"best: trial {best['trial']}" in md and md.count("| complete |") == 3
    assert (out / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_finetune_sweep_searches_adapter_options(tiny_run, tmp_path, one_thread):
    """Command finetune: a key under the adapter's options mapping (LoRA rank, int from its bounds)."""
    from lmforge.train.loop import pretrain

    pretrained = tmp_path / "pretrained"
    pretrain(C.load_config(C.PretrainConfig, None, {
        "model.preset": "llama-tiny", "model.dim": 32, "model.max_seq_len": 16, "model.vocab_size": 0,
        "train.shards_dir": str(tiny_run["shards"]), "train.tokenizer_dir": str(tiny_run["tokenizer"]),
        "train.run_dir": str(pretrained), "train.seq_len": 16, "train.batch_size": 2, "train.max_steps": 2,
        "train.device": "cpu"}))
    cfg = C.load_config(SweepConfig, None, {
        "command": "finetune", "run_dir": str(tmp_path / "sweep"), "trials": 3, "pruner": {"name": "none"},
        "overrides": {"train.init_from": str(pretrained), "train.shards_dir": str(tiny_run["shards"]),
                      "train.seq_len": 16, "train.batch_size": 2, "train.max_steps": 4, "train.eval_interval": 2,
                      "train.eval_batches": 1, "train.device": "cpu", "adapter.name": "lora"},
        "space": {"adapter.options.rank": {"low": 2, "high": 8}}})
    summary = run_sweep(cfg)
    assert summary["trials"] == {"complete": 3, "pruned": 0, "failed": 0}
    for row in read_csv(tmp_path / "sweep" / "results.csv"):
        ran = C.load_config(C.FinetuneConfig, tmp_path / "sweep" / f"trial_{int(row['trial']):04d}" / "config.yaml")
        assert ran.adapter.name == "lora" and ran.adapter.options["rank"] == int(row["adapter.options.rank"])
        assert 2 <= ran.adapter.options["rank"] <= 8
    best = C.load_config(C.FinetuneConfig, tmp_path / "sweep" / "best_config.yaml")
    assert best.adapter.options == {"rank": summary["best_params"]["adapter.options.rank"]}
    assert best.train.init_from == str(pretrained)


def test_a_finetune_sweep_without_init_from_is_refused_before_any_trial(tmp_path):
    cfg = C.load_config(SweepConfig, None, {"command": "finetune", "run_dir": str(tmp_path),
                                            "space": {"adapter.options.rank": {"low": 2, "high": 8}}})
    with pytest.raises(ConfigError, match=r"the sweep's base config \(overrides\) is refused: config key "
                                          r"'train.init_from': fine-tuning starts from a pretrained model"):
        make_plan(cfg)
