"""Training-step throughput: lmforge against HF transformers on the same work, in one process.

For each preset, both libraries get the identical model (our weights copied into
`LlamaForCausalLM` / `GPT2LMHeadModel` / `MistralForCausalLM` / `FalconForCausalLM` /
`BertForMaskedLM` / `T5ForConditionalGeneration` by `lmforge.interop.hf`), the same optimiser
(`build_optimizer`: AdamW, same groups), the same loss function on the logits, the same
random batch and the same gradient clipping, so the only difference is the model code. After
warm-up steps, timed steps alternate between the two (A B, then B A, ...) so both see the
same machine noise; the figure is the median step time. Because both start from the same
weights and take the same steps, their losses must agree step by step: the benchmark reports
the largest difference as a check that the work really is identical, and when it exceeds the
rounding bound (`equal_work.loss_tolerance`: 1024 float32 epsilons of the loss scale in fp32,
one bfloat16 epsilon under bf16 autocast) it prints "outputs differ: ...", leaves that config's
ratio out (table "-", JSON null, `equal_outputs: false`) and exits with status 1 after the
table and the JSON line. `--perturb-peer PRESETS` adds noise to one weight of HF's copy for
those presets: a self-check that the guard trips, not a measurement. On CPU the process keeps
freed memory for reuse, as `lmforge pretrain` does (`lmforge.train.host_memory`); that setting
is process-wide, so it speeds both libraries up alike.

Prints a header naming the CPU (or GPU) and torch version, a table, then one JSON line with
every figure and the lmforge/HF ratios (ratios are what to compare across machines: absolute
speed depends on the machine and its load).

    python benchmarks/train_throughput.py                       # CPU default: a few minutes on 2 cores
    python benchmarks/train_throughput.py --device cuda --batch-size 16 --seq-len 1024 --steps 20
    python benchmarks/train_throughput.py --configs gpt2-quickstart,llama-135m --dtype bf16
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import time
from typing import Any, Callable

import torch
from equal_work import check, cpu_name, exit_status, format_ratio, loss_tolerance, perturb_, ratio_if_equal

from lmforge.config import ModelConfig, OptimConfig
from lmforge.interop.hf import to_hf_model
from lmforge.models import PRESETS, build_model, count_parameters, flops_per_token, resolve_model_config
from lmforge.models.sizing import encoder_decoder_flops
from lmforge.objectives import causal_lm_loss, shift_right
from lmforge.train.host_memory import keep_freed_memory
from lmforge.train.metrics import mfu, peak_flops
from lmforge.train.optim import build_optimizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="llama-quickstart,gpt2-124m",
                        help="comma-separated presets (see `lmforge models`)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per library and config")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per library first")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="autocast dtype (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--vocab-size", type=int, default=4096,
                        help="vocabulary for presets that take it from a tokenizer (quickstart sizes)")
    parser.add_argument("--target-fraction", type=float, default=0.25,
                        help="encoder-decoders (t5): target length as a fraction of --seq-len (span "
                             "corruption at density 0.15, mean span 3 gives about 0.22)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perturb-peer", default="",
                        help="self-check of the benchmark: comma-separated presets whose HF copy gets noise "
                             "in one weight (a projection of its last block), so their losses differ, no ratio is "
                             "printed and the run exits 1")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.dtype is None:
        args.dtype = "bf16" if args.device.startswith("cuda") else "fp32"
    args.configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    for name in args.configs:
        if name not in PRESETS:
            parser.error(f"--configs: '{name}' is not a preset; choose from {', '.join(PRESETS)}")
    args.perturb_peer = [name.strip() for name in args.perturb_peer.split(",") if name.strip()]
    for name in args.perturb_peer:
        if name not in args.configs:
            parser.error(f"--perturb-peer: '{name}' is not in --configs")
    return args


def model_config(preset: str, vocab_size: int, seq_len: int) -> ModelConfig:
    cfg = resolve_model_config(ModelConfig(preset=preset, vocab_size=PRESETS[preset].get("vocab_size", vocab_size)))
    return dataclasses.replace(cfg, max_seq_len=max(cfg.max_seq_len, seq_len), dropout=0.0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_train_step(model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                    inputs_BT: torch.Tensor, targets_BT: torch.Tensor, device: torch.device,
                    dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """One optimiser step as lmforge's loop takes it: autocast forward, loss, backward, clip, AdamW."""
    optimizer = build_optimizer(model, OptimConfig(name="adamw", lr=3e-4, weight_decay=0.1), device.type)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())

    def step() -> torch.Tensor:
        with autocast:
            loss = causal_lm_loss(forward(inputs_BT), targets_BT)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def bench_config(preset: str, args: argparse.Namespace, device: torch.device, peak: float) -> dict[str, Any]:
    dtype = DTYPES[args.dtype]
    cfg = model_config(preset, args.vocab_size, args.seq_len)
    torch.manual_seed(args.seed)
    ours = build_model(cfg)
    hf = to_hf_model(ours).train()  # same weights, copied through the interop mapping
    if preset in args.perturb_peer:
        perturb_(hf, seed=args.seed)  # self-check: unequal work on purpose
    ours.to(device).train()
    hf.to(device)

    generator = torch.Generator().manual_seed(args.seed)
    window_BT = torch.randint(0, cfg.vocab_size, (args.batch_size, args.seq_len + 1), generator=generator)
    inputs_BT, targets_BT = window_BT[:, :-1].to(device), window_BT[:, 1:].to(device)
    tokens_per_step = args.batch_size * args.seq_len
    flops_token = flops_per_token(cfg, args.seq_len)
    if cfg.family == "t5":
        # Encoder-decoder: the inputs go to the encoder; a shorter target sequence is decoded
        # with teacher forcing (decoder inputs = targets shifted right), as in span corruption.
        target_len = max(1, round(args.seq_len * args.target_fraction))
        targets_BT = torch.randint(0, cfg.vocab_size, (args.batch_size, target_len), generator=generator).to(device)
        decoder_inputs_BT = shift_right(targets_BT, decoder_start_id=1, pad_id=1)
        ours_forward = lambda x: ours(x, decoder_inputs_BT)  # noqa: E731
        hf_forward = lambda x: hf(input_ids=x, decoder_input_ids=decoder_inputs_BT, use_cache=False).logits  # noqa: E731
        tokens_per_step = args.batch_size * (args.seq_len + target_len)
        flops_token = encoder_decoder_flops(cfg, args.seq_len, target_len) / (args.seq_len + target_len)
    else:
        ours_forward = ours
        hf_forward = lambda x: hf(input_ids=x, use_cache=False).logits  # noqa: E731
    with torch.no_grad():
        logits_gap = (ours_forward(inputs_BT) - hf_forward(inputs_BT)).abs().max().item()

    steps = {
        "lmforge": make_train_step(ours, ours_forward, inputs_BT, targets_BT, device, dtype),
        "hf": make_train_step(hf, hf_forward, inputs_BT, targets_BT, device, dtype),
    }
    losses: dict[str, list[float]] = {name: [] for name in steps}
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(args.warmup + args.steps):
        order = list(steps) if round_index % 2 == 0 else list(steps)[::-1]
        for name in order:
            sync(device)
            start = time.perf_counter()
            loss = steps[name]()
            sync(device)
            elapsed = time.perf_counter() - start
            losses[name].append(loss.item())
            if round_index >= args.warmup:
                seconds[name].append(elapsed)

    loss_gap = max(abs(a - b) for a, b in zip(losses["lmforge"], losses["hf"]))
    if any(x != x for x in losses["lmforge"] + losses["hf"]):  # a NaN loss matches nothing
        loss_gap = float("nan")
    equal = check(f"{preset} max |dloss|", loss_gap, loss_tolerance(losses["lmforge"] + losses["hf"], args.dtype))
    result: dict[str, Any] = {
        "config": preset, "family": cfg.family, "num_params": count_parameters(ours),
        "batch_size": args.batch_size, "seq_len": args.seq_len, "tokens_per_step": tokens_per_step,
        "flops_per_token": flops_token, "hf_attn_implementation": hf.config._attn_implementation,
        "max_abs_logit_diff": logits_gap,
        "max_abs_loss_diff": loss_gap, "loss_tolerance": equal.tolerance, "equal_outputs": equal.equal,
        "perturbed_peer": preset in args.perturb_peer,
        "losses": losses,  # per step, warm-up included: the same work, so they differ only by rounding
    }
    for name in steps:
        median = statistics.median(seconds[name])
        tokens_per_second = tokens_per_step / median
        result[name] = {"median_step_seconds": median, "min_step_seconds": min(seconds[name]),
                        "tokens_per_second": tokens_per_second,
                        "mfu": mfu(tokens_per_second, flops_token, peak)}
    result["speed_ratio_lmforge_over_hf"] = ratio_if_equal(
        equal, result["lmforge"]["tokens_per_second"] / result["hf"]["tokens_per_second"])
    return result


def format_table(results: list[dict[str, Any]]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    # The ratio column only when some config did equal work; "-" for those that did not.
    with_ratio = any(r["equal_outputs"] for r in results)
    header = ("config", "params", "tokens/step", "lmforge tok/s", "HF tok/s", *(("lmforge/HF",) * with_ratio),
              "lmforge MFU", "HF MFU", "max |dlogit|", "max |dloss|", "tolerance")
    rows = [header] + [(
        r["config"], f"{r['num_params'] / 1e6:.1f}M", str(r["tokens_per_step"]),
        f"{r['lmforge']['tokens_per_second']:,.0f}", f"{r['hf']['tokens_per_second']:,.0f}",
        *((format_ratio(r["speed_ratio_lmforge_over_hf"], ".3f"),) * with_ratio),
        pct(r["lmforge"]["mfu"]), pct(r["hf"]["mfu"]),
        f"{r['max_abs_logit_diff']:.1e}", f"{r['max_abs_loss_diff']:.1e}", f"{r['loss_tolerance']:.1e}")
        for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import transformers

    device = torch.device(args.device)
    if device.type == "cpu":  # as `lmforge pretrain` runs on CPU; process-wide, so HF gets it too
        print(keep_freed_memory(), file=sys.stderr)
    peak = peak_flops(device, DTYPES[args.dtype])  # measured before the models exist (CPU)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    machine = (f"device {device} ({device_name}), {args.dtype}, {torch.get_num_threads()} threads, "
               f"peak {peak / 1e12:.3f} TFLOP/s; torch {torch.__version__}, transformers {transformers.__version__}")
    print(machine, file=sys.stderr)
    results = []
    for preset in args.configs:
        started = time.perf_counter()
        results.append(bench_config(preset, args, device, peak))
        if device.type == "cuda":  # the models went with bench_config's frame: hand their memory back
            torch.cuda.empty_cache()
        print(f"{preset}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(machine)  # the table's header: every figure names its machine
    print(format_table(results))
    summary = {
        "benchmark": "train_throughput", "device": str(device), "device_name": device_name, "cpu": cpu_name(),
        "dtype": args.dtype, "num_threads": torch.get_num_threads(), "peak_flops": peak,
        "steps": args.steps, "warmup": args.warmup, "torch": torch.__version__,
        "transformers": transformers.__version__,
        "equal_outputs": all(r["equal_outputs"] for r in results),
        "ratios": {r["config"]: r["speed_ratio_lmforge_over_hf"] for r in results},  # null: unequal work
        "results": results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(exit_status(main()["results"]))
