"""Shared by the run-safety tests: the CLI arguments of a tiny pretraining run, and reading its records."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.cli import main


def pretrain_args(tiny_run: dict[str, Path], run_dir: Path, **options: object) -> list[str]:
    """`lmforge pretrain` arguments for llama-tiny on the tiny corpus; options override (dotted names)."""
    values: dict[str, object] = {
        "model.preset": "llama-tiny", "model.max_seq_len": 32, "model.vocab_size": 0,
        "optim.lr": 3e-3, "optim.warmup_steps": 2,
        "train.shards_dir": tiny_run["shards"], "train.tokenizer_dir": tiny_run["tokenizer"],
        "train.run_dir": run_dir, "train.seq_len": 32, "train.batch_size": 4, "train.max_steps": 8,
        "train.eval_interval": 0, "train.eval_batches": 2, "train.log_interval": 1, "train.device": "cpu",
        "train.seed": 0,
    }
    values.update({key if "." in key else f"train.{key}": value for key, value in options.items()})
    return ["pretrain"] + [text for key, value in values.items() for text in (f"--{key}", str(value))]


def run_cli(argv: list[str], capsys) -> tuple[int, list[str], str]:
    """(exit status, the `lmforge VERB: error:` lines on stderr, all of stdout and stderr) of
    `lmforge ARGV` run in-process."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("lmforge ")]
    return status, errors, captured.out + captured.err


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def training_steps(run_dir: Path) -> list[int]:
    """The step of every per-step training record (not the final evaluation, divergence or rollback notes)."""
    return [r["step"] for r in records(run_dir) if "loss" in r and not r.get("nonfinite")]
