"""The CLI end to end on a tiny corpus, its help, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import make_corpus
from lmforge import config as C
from lmforge.cli import VERBS, main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "lmforge.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for verb in VERBS:
        assert verb in result.stdout


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_option_is_in_verb_help(capsys, verb):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for dotted, _tp, _default, _help in C.iter_fields(VERBS[verb].config_cls):
        assert f"--{dotted}" in out


def test_end_to_end_on_a_tiny_corpus(capsys, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", num_files=16)
    docs, tok, shards, run = (tmp_path / n for n in ("docs", "tok", "shards", "run"))
    code, out, _ = run_cli(capsys, "prepare", "--source.kind", "text", "--source.paths", corpus,
                           "--out_dir", docs, "--val_fraction", "0.25")
    assert code == 0 and "read 16 = kept 16 + skipped 0" in out
    code, out, _ = run_cli(capsys, "tokenizer", "--input", docs / "train.jsonl", "--out_dir", tok,
                           "--vocab_size", "300")
    assert code == 0 and "300 tokens" in out
    code, out, _ = run_cli(capsys, "encode", "--documents_dir", docs, "--tokenizer_dir", tok,
                           "--out_dir", shards, "--num_workers", "1")
    assert code == 0 and "train:" in out and "val:" in out
    code, out, _ = run_cli(capsys, "pretrain", "--model.preset", "llama-tiny", "--model.max_seq_len", "32", "--model.vocab_size", "0",
                           "--train.shards_dir", shards, "--train.tokenizer_dir", tok, "--train.run_dir", run,
                           "--train.seq_len", "32", "--train.batch_size", "4", "--train.max_steps", "20",
                           "--train.device", "cpu", "--optim.lr", "3e-3", "--optim.warmup_steps", "2")
    assert code == 0 and "val bits per byte" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20

    code, out, _ = run_cli(capsys, "evaluate", run, "--data", shards, "--device", "cpu")
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bits_per_byte"] == pytest.approx(summary["val_bits_per_byte"], rel=1e-5)
    # a raw text file works too (tokenized on the fly with the checkpoint's tokenizer)
    code, out, _ = run_cli(capsys, "evaluate", run, "--data", corpus / "mod_00.py", "--device", "cpu")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["bytes"] == len(
        (corpus / "mod_00.py").read_bytes())

    code, out, _ = run_cli(capsys, "generate", run, "--prompt", "def ", "--max_new_tokens", "20",
                           "--temperature", "0", "--device", "cpu")
    assert code == 0 and out == "def " + greedy_by_hand(run, "def ", 20) + "\n"
    code2, out2, _ = run_cli(capsys, "generate", run, "--prompt", "def ", "--max_new_tokens", "20",
                             "--temperature", "0", "--device", "cpu")
    assert out2 == out  # greedy is deterministic
    code, out, _ = run_cli(capsys, "generate", run, "--prompt", "def ", "--max_new_tokens", "40",
                           "--temperature", "0", "--stop", "(", "--device", "cpu")
    assert code == 0 and "(" not in out[len("def "):]


def greedy_by_hand(run_dir, prompt: str, max_new_tokens: int) -> str:
    """Greedy continuation without the generation loop or its cache: the argmax of a full forward
    over eos + prompt + the tokens so far, until eos or the budget."""
    import torch

    from lmforge.train.checkpoint import load_checkpoint

    model, tokenizer, _ = load_checkpoint(run_dir, torch.device("cpu"))
    ids = [tokenizer.eos_id] + tokenizer.encode(prompt)  # documents follow an eos in training
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model.eval()(torch.tensor([ids + new]))[0, -1].argmax())
            if token == tokenizer.eos_id:
                break
            new.append(token)
    return tokenizer.decode(new)


@pytest.mark.parametrize("argv, fragment", [
    (["prepare", "--source.kind", "text", "--source.paths", "/no/such/dir"], "/no/such/dir"),
    (["pretrain", "--optim.lr", "fast"], "config key 'optim.lr': expected a number"),
    (["pretrain", "--train.shards_dir", "/no/shards", "--train.tokenizer_dir", "/no/tok"], "/no/tok"),
    (["evaluate", "/no/ckpt", "--data", "x"], "checkpoint '/no/ckpt' does not exist"),
    (["tokenizer", "--input", "/no/docs.jsonl"], "run `lmforge prepare` first"),
])
def test_user_mistakes_are_one_line_errors(capsys, argv, fragment):
    code, _out, err = run_cli(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_utf8_file_is_named_or_skipped(capsys, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", num_files=4)
    (corpus / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    code, _out, err = run_cli(capsys, "prepare", "--source.kind", "text", "--source.paths", corpus,
                              "--out_dir", tmp_path / "d")
    assert code == 2 and "latin1.txt" in err
    code, out, _err = run_cli(capsys, "prepare", "--source.kind", "text", "--source.paths", corpus,
                              "--out_dir", tmp_path / "d", "--source.on_error", "skip")
    assert code == 0 and "read 5 = kept 4 + skipped 1" in out
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["read"] == stats["kept"] + sum(stats["skipped"].values())


def test_bert_checkpoint_evaluates_masked_tokens_and_refuses_to_generate(capsys, tiny_run, tmp_path):
    run = tmp_path / "bert"
    code, _out, _err = run_cli(capsys, "pretrain", "--model.preset", "bert-tiny", "--model.vocab_size", "0",
                               "--model.max_seq_len", "32", "--train.shards_dir", tiny_run["shards"],
                               "--train.tokenizer_dir", tiny_run["tokenizer"], "--train.run_dir", run,
                               "--train.seq_len", "32", "--train.batch_size", "4", "--train.max_steps", "3",
                               "--train.device", "cpu")
    assert code == 0
    code, out, _ = run_cli(capsys, "evaluate", run, "--data", tiny_run["shards"], "--device", "cpu")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and 0.0 <= result["masked_lm_masked_accuracy"] <= 1.0 and result["masked_lm_loss"] > 0
    code, _out, err = run_cli(capsys, "generate", run, "--prompt", "x", "--device", "cpu")
    assert code == 2 and "does not generate text" in err


def test_t5_checkpoint_evaluates_spans_and_generates(capsys, tiny_run, tmp_path):
    run = tmp_path / "t5"
    code, _out, _err = run_cli(capsys, "pretrain", "--model.preset", "t5-tiny", "--model.vocab_size", "0",
                               "--train.shards_dir", tiny_run["shards"], "--train.tokenizer_dir",
                               tiny_run["tokenizer"], "--train.run_dir", run, "--train.seq_len", "24",
                               "--train.batch_size", "4", "--train.max_steps", "3", "--train.device", "cpu")
    assert code == 0
    code, out, _ = run_cli(capsys, "evaluate", run, "--data", tiny_run["shards"], "--seq_len", "24",
                           "--device", "cpu")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and 0.0 <= result["span_corruption_exact_span_accuracy"] <= 1.0
    code, out, _ = run_cli(capsys, "generate", run, "--prompt", "def alpha(", "--max_new_tokens", "8",
                           "--temperature", "0", "--device", "cpu")
    assert code == 0 and out.startswith("def alpha(")


def test_tasks_lists_every_task_with_its_options(capsys):
    from lmforge.train.tasks import registered_tasks

    code, out, _ = run_cli(capsys, "tasks")
    assert code == 0
    for name, spec in registered_tasks().items():
        assert f"{name}  {spec.summary}" in out
    assert "    mask_prob: 0.15  " in out and "    fused_loss: True  " in out and "    noise_density: 0.15  " in out


def test_evaluate_uses_the_task_and_options_the_checkpoint_names(capsys, tiny_run, tmp_path):
    from lmforge.evaluate import checkpoint_task
    from lmforge.train.checkpoint import latest_checkpoint, load_checkpoint

    run = tmp_path / "run"
    code, _out, _err = run_cli(capsys, "pretrain", "--model.preset", "bert-tiny", "--model.vocab_size", "0",
                               "--model.max_seq_len", "32", "--task.options", "{mask_prob: 0.3}",
                               "--train.shards_dir", tiny_run["shards"], "--train.tokenizer_dir", tiny_run["tokenizer"],
                               "--train.run_dir", run, "--train.seq_len", "32", "--train.batch_size", "4",
                               "--train.max_steps", "2", "--train.device", "cpu")
    assert code == 0
    model, tokenizer, ckpt_dir = load_checkpoint(latest_checkpoint(run))
    task = checkpoint_task(ckpt_dir, model.config, tokenizer)
    assert (task.name, task.mask_prob) == ("masked_lm", 0.3)
    code, out, _ = run_cli(capsys, "evaluate", run, "--data", tiny_run["shards"], "--device", "cpu")
    assert code == 0 and "masked_lm_masked_accuracy" in json.loads(out.strip().splitlines()[-1])


def test_evaluate_refuses_a_classifier_in_one_line(capsys, tmp_path):
    from pathlib import Path

    classifier = Path(__file__).parent / "golden" / "checkpoint_v1" / "bert_classifier"
    (tmp_path / "text.txt").write_text("some held-out text\n")
    code, _out, err = run_cli(capsys, "evaluate", classifier, "--data", tmp_path / "text.txt", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is a sequence_classification model, and `lmforge evaluate` measures the task masked_lm" in err
