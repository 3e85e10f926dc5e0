"""The peer benchmarks print a ratio only for equal work (`benchmarks/equal_work.py`).

Each script runs as a subprocess on the smallest preset and a step or two: once with
`--perturb-peer` (noise in one weight of the peer's copy, the scripts' self-check), which must
exit 1, print "outputs differ" and no ratio for the perturbed rows, and once without, which
must exit 0 and print the ratio. Expected values are re-derived here from the figures the
script reports (losses, token counts, tokens/s), not read back from its verdict.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import equal_work  # noqa: E402

FP32_TOLERANCE = 1024 * torch.finfo(torch.float32).eps  # relative to the run's largest loss


def run(script: str, *args: str) -> tuple[int, list[str], dict]:
    """Run a benchmark; return its exit status, stdout lines and final JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr  # 1 is the verdict; anything else is a crash
    return proc.returncode, lines, json.loads(lines[-1])


def table(lines: list[str], first_header_cell: str, gap: str = r"\s{2,}") -> tuple[list[str], list[list[str]]]:
    """The table as header cells and rows of cells (columns separated by `gap`: two or more
    spaces, as header names such as "HF tok/s" contain one)."""
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(first_header_cell))
    split = lambda line: re.split(gap, line.strip())  # noqa: E731
    header = split(lines[start])
    rows = [split(line) for line in lines[start + 1:] if not line.startswith("{")]
    assert all(len(row) == len(header) for row in rows), (header, rows)
    return header, rows


def proc_cpu_model_name() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))


# --------------------------------------------------------------------------- the shared helper


def test_loss_tolerance_is_1024_float32_eps_of_the_largest_loss():
    assert equal_work.FLOAT32_EPS == torch.finfo(torch.float32).eps
    assert equal_work.BFLOAT16_EPS == torch.finfo(torch.bfloat16).eps
    # largest |loss| 8: 1024 * 2**-23 * 8 = 2**-10; a NaN loss does not set the scale
    assert equal_work.loss_tolerance([5.5, -8.0, float("nan"), 2.0], "fp32") == 2.0 ** -10
    assert equal_work.loss_tolerance([4.0], "bf16") == 4.0 * 2.0 ** -7


def test_check_prints_the_verdict_and_exit_status(capsys):
    ok = equal_work.check("x max |dloss|", 1e-4, 1e-3)
    assert ok.equal and capsys.readouterr().out == ""
    bad = equal_work.check("x max |dloss|", 0.5, 1e-3)
    assert not bad.equal
    assert capsys.readouterr().out == "outputs differ: x max |dloss| 0.5 > tolerance 0.001; no ratio printed\n"
    assert not equal_work.check("x", float("nan"), 1.0).equal  # NaN never passes
    assert equal_work.check("tokens", 0, 0).equal and not equal_work.check("tokens", 1, 0).equal
    assert equal_work.ratio_if_equal(ok, 1.5) == 1.5 and equal_work.ratio_if_equal(bad, 1.5) is None
    assert equal_work.exit_status([{"equal_outputs": True}] * 2) == 0
    assert equal_work.exit_status([{"equal_outputs": True}, {"equal_outputs": False}]) == 1


def test_cpu_name_names_the_model():
    name = equal_work.cpu_name()
    if os.path.exists("/proc/cpuinfo"):
        assert name.startswith(proc_cpu_model_name())


# --------------------------------------------------------------------------- train_throughput


TRAIN = ("--steps", "1", "--warmup", "1", "--seq-len", "16", "--batch-size", "1")


@pytest.mark.slow
def test_train_throughput_withholds_the_ratio_of_a_perturbed_config_and_exits_1():
    status, lines, summary = run("train_throughput.py", "--configs", "llama-tiny,gpt2-tiny",
                                 "--perturb-peer", "gpt2-tiny", *TRAIN)
    assert status == 1
    results = {r["config"]: r for r in summary["results"]}
    for name, r in results.items():  # re-derive each verdict from the reported losses
        gap = max(abs(a - b) for a, b in zip(r["losses"]["lmforge"], r["losses"]["hf"]))
        tolerance = FP32_TOLERANCE * max(map(abs, r["losses"]["lmforge"] + r["losses"]["hf"]))
        assert math.isclose(r["loss_tolerance"], tolerance, rel_tol=1e-12)
        assert (gap > tolerance) == (name == "gpt2-tiny")
    assert "outputs differ: gpt2-tiny max |dloss|" in "\n".join(lines)
    assert not any(line.startswith("outputs differ: llama-tiny") for line in lines)
    assert summary["equal_outputs"] is False
    assert summary["ratios"]["gpt2-tiny"] is None
    llama = results["llama-tiny"]
    assert summary["ratios"]["llama-tiny"] == pytest.approx(
        llama["lmforge"]["tokens_per_second"] / llama["hf"]["tokens_per_second"])
    header, rows = table(lines, "config")
    ratio_column = header.index("lmforge/HF")
    cells = {row[0]: row[ratio_column] for row in rows}
    assert cells == {"llama-tiny": f"{summary['ratios']['llama-tiny']:.3f}", "gpt2-tiny": "-"}
    # every figure names its machine: the header line above the table and the JSON
    assert proc_cpu_model_name() in lines[lines.index(next(x for x in lines if x.startswith("config"))) - 1]
    assert summary["cpu"].startswith(proc_cpu_model_name()) and summary["torch"] == torch.__version__


@pytest.mark.slow
def test_train_throughput_prints_the_ratio_for_equal_work_and_exits_0():
    status, lines, summary = run("train_throughput.py", "--configs", "gpt2-tiny", *TRAIN)
    assert status == 0
    assert not any("outputs differ" in line for line in lines)
    r = summary["results"][0]
    assert max(abs(a - b) for a, b in zip(r["losses"]["lmforge"], r["losses"]["hf"])) <= r["loss_tolerance"]
    assert summary["equal_outputs"] is True
    assert summary["ratios"]["gpt2-tiny"] == pytest.approx(r["lmforge"]["tokens_per_second"]
                                                          / r["hf"]["tokens_per_second"])
    header, rows = table(lines, "config")
    assert rows[0][header.index("lmforge/HF")] == f"{summary['ratios']['gpt2-tiny']:.3f}"


# --------------------------------------------------------------------------- generate_throughput


GENERATE = ("--batch-sizes", "1,2", "--prompt-len", "4", "--new-tokens", "6", "--repeats", "1")


@pytest.mark.slow
def test_generate_throughput_withholds_ratios_of_unequal_tokens_and_exits_1():
    status, lines, summary = run("generate_throughput.py", "--configs", "llama-tiny,gpt2-tiny",
                                 "--perturb-peer", "gpt2-tiny", *GENERATE)
    assert status == 1
    rows = {(r["config"], r["batch_size"]): r for r in summary["results"]}
    assert sorted(rows) == [("gpt2-tiny", 1), ("gpt2-tiny", 2), ("llama-tiny", 1), ("llama-tiny", 2)]
    for (name, batch), r in rows.items():
        key = f"{name}@b{batch}"
        if name == "gpt2-tiny":  # every batch size of the perturbed config is checked and refused
            assert 0 < r["mismatched_tokens"] <= batch * 6
            assert summary["ratios"][key] is None
            assert f"outputs differ: gpt2-tiny batch {batch} mismatched tokens" in "\n".join(lines)
        else:
            assert r["mismatched_tokens"] == 0
            assert summary["ratios"][key] == pytest.approx(r["hf"]["median_seconds"] / r["lmforge"]["median_seconds"])
    assert summary["equal_outputs"] is False
    header, table_rows = table(lines, "config")
    ratio_column = header.index("lmforge/HF")
    cells = {(row[0], int(row[1])): row[ratio_column] for row in table_rows}
    assert cells[("gpt2-tiny", 1)] == cells[("gpt2-tiny", 2)] == "-"
    assert cells[("llama-tiny", 1)] == f"{summary['ratios']['llama-tiny@b1']:.2f}"
    assert proc_cpu_model_name() in summary["cpu"] and summary["torch"] == torch.__version__
    assert any(line.startswith("device cpu (" + proc_cpu_model_name()) and f"torch {torch.__version__}" in line
               for line in lines)


@pytest.mark.slow
def test_generate_throughput_prints_the_ratio_for_identical_tokens_and_exits_0():
    status, lines, summary = run("generate_throughput.py", "--configs", "gpt2-tiny", *GENERATE)
    assert status == 0
    assert not any("outputs differ" in line for line in lines)
    assert [r["mismatched_tokens"] for r in summary["results"]] == [0, 0]
    header, rows = table(lines, "config")
    for r, row in zip(summary["results"], rows):
        ratio = r["hf"]["median_seconds"] / r["lmforge"]["median_seconds"]
        assert row[header.index("lmforge/HF")] == f"{ratio:.2f}"


# --------------------------------------------------------------------------- linear_cross_entropy


LCE = ("--preset", "llama-tiny", "--batch-size", "1", "--seq-len", "16", "--steps", "1")


@pytest.mark.slow
def test_linear_cross_entropy_withholds_both_ratios_when_losses_differ():
    status, lines, summary = run("linear_cross_entropy.py", *LCE, "--perturb-peer")
    assert status == 1
    assert summary["max_abs_loss_diff"] > summary["loss_tolerance"]
    assert any(line.startswith("outputs differ: llama-tiny max |dloss|") for line in lines)
    assert not any(line.startswith("chunked/plain") for line in lines)
    assert summary["speed_ratio_chunked_over_plain"] is None and summary["memory_ratio_chunked_over_plain"] is None


@pytest.mark.slow
def test_linear_cross_entropy_prints_the_ratio_when_losses_agree():
    status, lines, summary = run("linear_cross_entropy.py", *LCE)
    assert status == 0
    assert summary["max_abs_loss_diff"] <= summary["loss_tolerance"]
    speed = summary["plain"]["median_step_seconds"] / summary["chunked"]["median_step_seconds"]
    assert summary["speed_ratio_chunked_over_plain"] == pytest.approx(speed)
    assert any(line.startswith(f"chunked/plain: speed {speed:.2f}x") for line in lines)


# --------------------------------------------------------------------------- data_scaling


SCALING = ("--files", "2", "--docs-per-file", "15", "--workers", "1,2")


@pytest.mark.slow
def test_data_scaling_withholds_the_speedup_of_a_differing_output():
    status, lines, summary = run("data_scaling.py", *SCALING, "--perturb-peer")
    assert status == 1
    assert "outputs differ: 2 workers: output documents differing from 1 workers' 1 > tolerance 0; " \
           "no ratio printed" in lines
    assert [(r["workers"], r["identical_output"], r["speedup"]) for r in summary["rows"]] == [
        (1, True, 1.0), (2, False, None)]
    header, rows = table(lines, "workers", gap=r"\s+")
    assert [row[header.index("speedup")] for row in rows] == ["1.00", "-"]


@pytest.mark.slow
def test_data_scaling_prints_the_speedup_of_identical_outputs():
    status, lines, summary = run("data_scaling.py", *SCALING)
    assert status == 0
    first, second = summary["rows"]
    assert second["identical_output"] and second["speedup"] == round(second["docs_per_s"] / first["docs_per_s"], 2)


# --------------------------------------------------------------------------- finetune_memory


@pytest.mark.slow
def test_finetune_memory_prints_the_lora_over_peft_ratio_when_step0_losses_agree():
    status, lines, summary = run("finetune_memory.py", "--quick", "--configs", "lora,peft")
    assert status == 0 and summary["equal_outputs"] is True
    lora, peft = summary["configs"]["lora"], summary["configs"]["peft"]
    assert abs(lora["step0_loss"] - peft["step0_loss"]) <= FP32_TOLERANCE * abs(lora["step0_loss"])
    # per layer: q_proj A 8x64 + B 64x8, v_proj A 8x64 + B 32x8 (llama-tiny: 2 layers, 2 of 4 kv heads)
    assert lora["trainable"] == peft["trainable"] == 2 * (8 * 64 + 64 * 8 + 8 * 64 + 32 * 8)
    assert summary["lora_tokens_per_s_vs_peft"] == pytest.approx(lora["tokens_per_s"] / peft["tokens_per_s"])
    assert f"LoRA tokens/s vs peft: {summary['lora_tokens_per_s_vs_peft']:.2f}x (target >= 1.0)" in lines
