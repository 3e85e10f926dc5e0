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


# --------------------------------------------------------------------------- encoder-decoder FLOPs

TINY_T5 = dict(family="t5", vocab_size=32, max_seq_len=16, dim=8, num_layers=1, num_heads=2, hidden_dim=16,
               feed_forward="relu", tie_embeddings=True, bias=False, norm_eps=1e-6)


def test_encoder_decoder_flops_by_hand():
    from lmforge.config import ModelConfig
    from lmforge.models.sizing import encoder_decoder_flops, flops_per_token

    cfg = ModelConfig(**TINY_T5)
    # D=8, H·Q=2·4=8, F=16, V=32, one layer per stack.
    # encoder: q,k,v,o 4·8·8=256 + MLP 2·8·16=256 + 2 norms 16 + final norm 8 = 536
    # cross-attention k,v (run over the encoder output, per input token): 2·8·8 = 128
    # decoder rest: self-attn 256 + cross q,o 128 + MLP 256 + 3 norms 24 + final norm 8 = 672; head 8·32 = 256
    # per input token:  6·(536+128) + 12·1·8·T_in            = 3984 + 576  = 4560   (T_in = 6)
    # per target token: 6·(672+256) + 12·1·8·(T_out + T_in)  = 5568 + 864  = 6432   (T_out = 3)
    assert encoder_decoder_flops(cfg, inputs_len=6, targets_len=3) == 6 * 4560 + 3 * 6432 == 46_656
    # equal lengths give back the old per-target-token figure
    assert encoder_decoder_flops(cfg, 16, 16) == 16 * flops_per_token(cfg, 16)
    with pytest.raises(Exception, match="family t5"):
        encoder_decoder_flops(ModelConfig(preset="llama-tiny", vocab_size=64), 4, 4)


def test_span_corruption_flops_per_raw_token_by_hand():
    from types import SimpleNamespace

    from lmforge.config import ModelConfig
    from lmforge.models.sizing import flops_per_token
    from lmforge.train.tasks import SpanCorruptionTask

    cfg = ModelConfig(**{**TINY_T5, "vocab_size": 132})  # 32 tokenizer ids + 100 sentinels
    task = SpanCorruptionTask(SimpleNamespace(vocab_size=32, eos_id=2, pad_id=1, require_id=lambda role, why: {'eos': 2}[role]), cfg.vocab_size)
    # seq_len 16: a raw chunk of 17 tokens has round(17·0.15) = 3 noise tokens in round(3/3) = 1 span,
    # so inputs 17-3+1+1 = 16 and targets 3+1+2 = 6 (sentinel, closing sentinel, eos)
    assert task.window_len(16) == 17
    # the head is now 8·132 = 1056 weights: per input token 6·664 + 12·8·16 = 5520,
    # per target token 6·(672+1056) + 12·8·(6+16) = 12480
    expected = (16 * 5520 + 6 * 12480) / 17
    assert task.flops_per_token(cfg, 16) == pytest.approx(expected, rel=1e-12)
    # what the loop multiplied before: every raw token charged a full-length target
    assert flops_per_token(cfg, 16) / task.flops_per_token(cfg, 16) > 1.6


def test_span_corruption_mfu_at_t5_small_lengths_is_below_the_old_figure():
    from types import SimpleNamespace

    from lmforge.config import ModelConfig
    from lmforge.models import resolve_model_config
    from lmforge.models.sizing import encoder_decoder_flops, flops_per_token
    from lmforge.train.tasks import SpanCorruptionTask

    cfg = resolve_model_config(ModelConfig(preset="t5-small"))
    task = SpanCorruptionTask(SimpleNamespace(vocab_size=32_000, eos_id=1, pad_id=0, require_id=lambda role, why: {'eos': 1}[role]), cfg.vocab_size)
    honest = task.flops_per_token(cfg, 512)
    assert honest == encoder_decoder_flops(cfg, 512, 115) / 568
    tokens_per_second, peak = 100_000.0, 312e12
    assert mfu(tokens_per_second, honest, peak) < 0.6 * mfu(tokens_per_second, flops_per_token(cfg, 512), peak)
