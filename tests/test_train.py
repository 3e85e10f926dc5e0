"""The training loop: golden losses, exact resume, budgets, checkpoints, DDP equivalence."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_pretrain_config
from lmforge.errors import CheckpointError, ConfigError
from lmforge.tokenize import load_tokenizer
from lmforge.train import checkpoint as ckpt
from lmforge.train.loop import pretrain

GOLDEN = Path(__file__).parent / "golden" / "llama_tiny_losses.json"


def losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_golden_loss_trajectory(tiny_run, tmp_path):
    """Fixed seed, fixed data: the first losses match the recorded trajectory.

    The golden file is committed. To regenerate it deliberately (after an intended change to
    init, data order or the loss), run ``LMFORGE_UPDATE_GOLDEN=1 pytest tests/test_train.py -k
    golden``: that run writes the file and then fails, since it compared nothing; review
    ``git diff tests/golden`` and say why in the commit. A missing file fails: the test never
    writes its own expectation.
    """
    summary = pretrain(tiny_pretrain_config(tiny_run, tmp_path / "run"))
    got = losses(tmp_path / "run")
    assert summary["steps"] == 8 and len(got) == 8
    if os.environ.get("LMFORGE_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps({str(k): v for k, v in got.items()}, indent=1))
        pytest.fail(f"LMFORGE_UPDATE_GOLDEN is set: wrote {GOLDEN} and checked nothing; review the diff, "
                    "commit it, and rerun without the variable")
    if not GOLDEN.exists():
        pytest.fail(f"golden file {GOLDEN} is missing: restore it from git (git checkout -- {GOLDEN}), or "
                    "regenerate it deliberately with LMFORGE_UPDATE_GOLDEN=1 and commit it")
    expected = {int(k): v for k, v in json.loads(GOLDEN.read_text()).items()}
    assert got.keys() == expected.keys()
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-4, abs=1e-4), step
    # Independent of the golden file: at init (weights ~ N(0, 0.02)) the logits are nearly equal,
    # so the first loss is close to ln(vocab), the loss of a uniform guess...
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    assert got[1] == pytest.approx(math.log(vocab_size), abs=0.1)
    # ...and it learns: the loss at the end is clearly below that
    assert got[8] < got[1] - 0.5


class Crash(RuntimeError):
    pass


def test_exact_resume_after_a_crash(tiny_run, tmp_path):
    full = tmp_path / "full"
    pretrain(tiny_pretrain_config(tiny_run, full))

    crashed = tmp_path / "crashed"
    cfg = tiny_pretrain_config(tiny_run, crashed, checkpoint_interval=3)

    def crash_at_5(step, record):
        if step == 5:
            raise Crash("simulated")

    with pytest.raises(Crash):
        pretrain(cfg, on_step=crash_at_5)
    assert ckpt.latest_checkpoint(crashed).name == "step_00000003"
    pretrain(cfg)  # resumes from step 3 and redoes steps 4..8

    expected, got = losses(full), losses(crashed)
    for step in range(1, 9):
        assert got[step] == expected[step], step  # bit-identical, not approximately
    a = ckpt.latest_checkpoint(full)
    b = ckpt.latest_checkpoint(crashed)
    from safetensors.torch import load_file
    wa, wb = load_file(a / ckpt.MODEL_FILE), load_file(b / ckpt.MODEL_FILE)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_keep_last_and_atomic_layout(tiny_run, tmp_path):
    run = tmp_path / "run"
    pretrain(tiny_pretrain_config(tiny_run, run, checkpoint_interval=2, keep_last=2))
    names = sorted(p.name for p in ckpt.checkpoints_dir(run).iterdir())
    assert names == ["step_00000006", "step_00000008"]  # no leftover temporary dirs
    newest = ckpt.latest_checkpoint(run)
    assert {p.name for p in newest.iterdir()} == {"model.safetensors", "config.json", "tokenizer",
                                                  "trainer_state.pt"}
    state = torch.load(newest / ckpt.STATE_FILE, weights_only=True)
    assert state["step"] == 8 and state["sampler"]["position"] == 8 * 4
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val_bits_per_byte", "val_loss", "num_params", "tokens_seen", "tokens_per_second"):
        assert key in summary
    assert summary["tokens_seen"] == 8 * 4 * 32
    assert (run / "config.yaml").is_file()


def test_incomplete_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    run = tmp_path / "run"
    pretrain(tiny_pretrain_config(tiny_run, run, max_steps=2, checkpoint_interval=1, keep_last=3))
    step1, step2 = ckpt.checkpoints_dir(run) / "step_00000001", ckpt.checkpoints_dir(run) / "step_00000002"
    (step2 / ckpt.MODEL_FILE).unlink()
    with pytest.raises(CheckpointError, match="incomplete .*missing model.safetensors"):
        ckpt.load_checkpoint(step2)
    assert ckpt.latest_checkpoint(run) == step1  # resume skips the incomplete one
    data = (step1 / ckpt.MODEL_FILE).read_bytes()
    (step1 / ckpt.MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable model.safetensors"):
        ckpt.load_checkpoint(step1)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        ckpt.load_checkpoint(tmp_path / "empty")


def test_token_and_time_budgets(tiny_run, tmp_path):
    s = pretrain(tiny_pretrain_config(tiny_run, tmp_path / "tok", max_steps=0, max_tokens=3 * 4 * 32))
    assert s["steps"] == 3 and s["stop_reason"] == "max_tokens"
    s = pretrain(tiny_pretrain_config(tiny_run, tmp_path / "time", max_steps=0, max_seconds=0.5))
    assert s["stop_reason"] == "max_seconds" and s["train_seconds"] >= 0.5
    with pytest.raises(ConfigError, match="no training budget"):
        pretrain(tiny_pretrain_config(tiny_run, tmp_path / "none", max_steps=0))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_and_learns(tiny_run, tmp_path, precision):
    s = pretrain(tiny_pretrain_config(tiny_run, tmp_path / precision, precision=precision))
    got = losses(tmp_path / precision)
    assert got[8] < got[1] and s["val_loss"] == s["val_loss"]  # finite, not NaN


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "lamb"])
def test_every_optimizer_trains(tiny_run, tmp_path, optimizer):
    lr = {"sgd": 0.3, "adam": 3e-3, "lamb": 5e-2}[optimizer]
    pretrain(tiny_pretrain_config(tiny_run, tmp_path / optimizer, **{"optim.name": optimizer, "optim.lr": lr}))
    got = losses(tmp_path / optimizer)
    assert got[8] < got[1] - 0.2


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tiny_run, tmp_path):
    """2 processes x batch 2 == 1 process x batch 2 x grad_accum 2 (same global batch)."""
    single = tmp_path / "single"
    pretrain(tiny_pretrain_config(tiny_run, single, batch_size=2, grad_accum=2, max_steps=4))

    ddp = tmp_path / "ddp"
    cfg = tiny_pretrain_config(tiny_run, ddp, batch_size=2, grad_accum=1, max_steps=4)
    from lmforge.config import save_config
    save_config(cfg, tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "lmforge.cli", "pretrain", "--config", str(tmp_path / "ddp.yaml")],
        capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = losses(single), losses(ddp)
    assert a.keys() == b.keys()
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=2e-5), step
    from safetensors.torch import load_file
    wa = load_file(ckpt.latest_checkpoint(single) / ckpt.MODEL_FILE)
    wb = load_file(ckpt.latest_checkpoint(ddp) / ckpt.MODEL_FILE)
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), key


def test_resume_refuses_a_run_dir_trained_with_another_tokenizer(tiny_run, tmp_path):
    from lmforge.config import TokenizerConfig
    from lmforge.tokenize.documents import train_tokenizer_on_documents
    from lmforge.data import encode_documents
    from lmforge.config import EncodeConfig

    run = tmp_path / "run"
    pretrain(tiny_pretrain_config(tiny_run, run, max_steps=2))
    other_tok, other_shards = tmp_path / "tok300", tmp_path / "shards300"
    train_tokenizer_on_documents(TokenizerConfig(input=str(tiny_run["documents"] / "train.jsonl"),
                                                 out_dir=str(other_tok), vocab_size=300))
    encode_documents(EncodeConfig(documents_dir=str(tiny_run["documents"]), tokenizer_dir=str(other_tok),
                                  out_dir=str(other_shards), num_workers=1))
    cfg = tiny_pretrain_config({"shards": other_shards, "tokenizer": other_tok}, run, max_steps=4)
    with pytest.raises(CheckpointError, match="trained with another tokenizer"):
        pretrain(cfg)


def test_bert_masked_lm_pretraining_through_the_same_loop(tiny_run, tmp_path):
    run = tmp_path / "bert"
    cfg = tiny_pretrain_config(tiny_run, run, max_steps=30, **{"model.preset": "bert-tiny", "optim.lr": 3e-3})
    summary = pretrain(cfg)
    assert summary["objective"] == "masked_lm"
    assert 0.0 <= summary["val_masked_accuracy"] <= 1.0 and "val_bits_per_byte" not in summary
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "masked_accuracy" in r]
    assert len(train) == 30
    assert sum(r["loss"] for r in train[-5:]) / 5 < sum(r["loss"] for r in train[:5]) / 5 - 0.3
    assert any("val_masked_accuracy" in r for r in records)


def test_bert_resume_is_exact_too(tiny_run, tmp_path):
    """Masks are seeded by (seed, step, slot), so a resumed MLM run sees the same masks."""
    overrides = {"model.preset": "bert-tiny", "max_steps": 6}
    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "full", **overrides))
    cfg = tiny_pretrain_config(tiny_run, tmp_path / "crashed", checkpoint_interval=3, **overrides)

    def crash_at_4(step, record):
        if step == 4:
            raise Crash("simulated")

    with pytest.raises(Crash):
        pretrain(cfg, on_step=crash_at_4)
    pretrain(cfg)
    assert losses(tmp_path / "full") == losses(tmp_path / "crashed")


def test_t5_span_corruption_pretraining_through_the_same_loop(tiny_run, tmp_path):
    run = tmp_path / "t5"
    cfg = tiny_pretrain_config(tiny_run, run, max_steps=30, **{"model.preset": "t5-tiny", "optim.lr": 3e-3,
                                                                "seq_len": 24})
    summary = pretrain(cfg)
    assert summary["objective"] == "span_corruption"
    assert 0.0 <= summary["val_exact_span_accuracy"] <= 1.0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "exact_span_accuracy" in r]
    assert len(train) == 30
    assert sum(r["loss"] for r in train[-5:]) / 5 < sum(r["loss"] for r in train[:5]) / 5 - 0.3
    # each example reads the raw chunk whose corrupted input fits 24 tokens (T5's 512 -> 568 rule)
    from lmforge.masking import raw_length_for_inputs
    raw = raw_length_for_inputs(24)[0]
    assert raw > 24 and summary["tokens_seen"] == 30 * 4 * raw
