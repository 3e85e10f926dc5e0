"""MFU arithmetic, GPU table lookup by name, the CPU peak, JSON-lines writer and progress lines."""

import io
import json
import math

import pytest
import torch

from lmforge.train.metrics import (GPU_PEAK_FLOPS, MetricsWriter, ProgressReporter, lookup_gpu_peak_flops,
                                   measure_cpu_peak_flops, mfu, peak_flops, peak_memory_bytes)


def test_mfu_arithmetic():
    # 1,000 tok/s * 6e9 FLOPs/token = 6e12 FLOP/s against a 989e12 peak
    assert mfu(1_000, 6e9, 989e12) == pytest.approx(6e12 / 989e12)
    assert mfu(50_000, 1e6, 200e9) == pytest.approx(0.25)
    assert mfu(1_000, 6e9, 0.0) is None


@pytest.mark.parametrize("name,dtype,expected", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989e12),  # the SXM part's device name
    ("NVIDIA H100 PCIe", "bf16", 756e12),
    ("NVIDIA H100 NVL", "bf16", 835e12),
    ("NVIDIA H200", "bf16", 989e12),
    ("NVIDIA GH200 480GB", "bf16", 989e12),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
    ("NVIDIA A100-PCIE-40GB", "tf32", 156e12),
    ("NVIDIA A100-SXM4-40GB", "fp32", 19.5e12),
    ("NVIDIA A10", "bf16", 125e12),  # "a10" must not swallow "a100" or "a10g", nor "l4" "l40s"
    ("NVIDIA A10G", "fp16", 125e12),
    ("NVIDIA L4", "bf16", 121e12),
    ("NVIDIA L40S", "bf16", 362e12),
    ("NVIDIA GeForce RTX 4090", "bf16", 165.2e12),
    ("Tesla V100-SXM2-16GB", "fp16", 125e12),
    ("Tesla V100-PCIE-32GB", "fp16", 112e12),
    ("Tesla T4", "fp16", 65e12),
    ("AMD Instinct MI300X", "bf16", 1307.4e12),
])
def test_gpu_table_lookup_by_device_name(name, dtype, expected):
    assert lookup_gpu_peak_flops(name, dtype) == expected


def test_unknown_gpu_or_dtype_gives_zero_and_mfu_none():
    assert lookup_gpu_peak_flops("NVIDIA Quantum Widget 9000", "bf16") == 0.0
    assert lookup_gpu_peak_flops("Tesla V100-SXM2-16GB", "bf16") == 0.0  # no bf16 tensor cores
    assert mfu(1e4, 1e9, lookup_gpu_peak_flops("Mystery GPU", "bf16")) is None
    assert GPU_PEAK_FLOPS[("h100", "bf16")] == 989e12


def test_cpu_peak_is_measured_positive_and_cached():
    quick = measure_cpu_peak_flops(size=256, seconds=0.05)
    assert 1e8 < quick < 1e14
    first = peak_flops(torch.device("cpu"))
    assert first > 1e8
    assert peak_flops(torch.device("cpu")) == first  # measured once per process


def test_peak_memory_on_cpu_is_the_process_rss():
    bytes_used = peak_memory_bytes(torch.device("cpu"))
    assert 10 * 2 ** 20 < bytes_used < 2 ** 40  # a Python process with torch loaded: tens of MiB at least
    assert peak_memory_bytes(torch.device("meta")) == 0


def test_metrics_writer_appends_valid_json_lines(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    with MetricsWriter(path) as writer:
        writer.write({"step": 1, "loss": 2.5, "lr": 1e-3})
        writer.write({"step": 2, "loss": float("nan"), "val": torch.tensor(0.25), "mfu": None})
        assert len(path.read_text().splitlines()) == 2  # flushed per line, before close
    with MetricsWriter(path) as writer:  # appends, does not truncate
        writer.write({"step": 3, "inf": math.inf, "nested": {"a": [1.0, float("-inf")]}})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {"step": 1, "loss": 2.5, "lr": 1e-3},
        {"step": 2, "loss": None, "val": 0.25, "mfu": None},
        {"step": 3, "inf": None, "nested": {"a": [1.0, None]}},
    ]


def test_progress_reporter_prints_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = ProgressReporter(total_steps=20, log_interval=10, stream=stream)
    for step in range(1, 21):
        record = {"step": step, "loss": 3.0 - 0.1 * step}
        if step % 10 == 0 or step == 1:
            record.update({"lr": 1e-3, "tokens_per_second": 12345.6, "mfu": 0.123})
        progress.update(step, record)
    progress.write("done")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # steps 1, 10, 20 and the message
    assert lines[0].startswith("step 1/20 | loss 2.9000 | lr 1.00e-03 | 12,346 tok/s | mfu 12.3% | eta ")
    assert lines[2] == "step 20/20 | loss 1.0000 | lr 1.00e-03 | 12,346 tok/s | mfu 12.3%"
    assert lines[3] == "done"


def test_progress_reporter_disabled_prints_nothing():
    stream = io.StringIO()
    progress = ProgressReporter(total_steps=0, log_interval=1, enabled=False, stream=stream)
    progress.update(1, {"loss": 1.0})
    progress.write("hidden")
    progress.close()
    assert stream.getvalue() == ""
