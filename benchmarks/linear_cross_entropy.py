"""Chunked head + cross-entropy (`lmforge.linear_cross_entropy`) against the plain path (full
logits, then `causal_lm_loss`, as HF transformers computes its loss), in one process.

Two copies of the same model (same weights, same optimiser, same batch) take alternating
training steps (A B, then B A, ...); the figure is the median step time of each and their
ratio. Their losses must agree step by step: when the largest difference exceeds the fp32
rounding bound (`equal_work.loss_tolerance`, 1024 float32 epsilons of the loss scale) the run
prints "outputs differ: ...", no ratio (JSON ratios null, `equal_outputs: false`) and exits with
status 1 after the JSON line; `--perturb-peer` adds noise to one weight of the chunked copy, a
self-check that this guard trips. Peak memory is measured separately:
one short child process per path (two steps) reports its peak resident set (CPU: the whole
process, model and optimiser included) or peak allocated memory (CUDA), since one process's
peak covers both paths.

Prints a header naming the CPU and torch version, a table, then one JSON line.

    python benchmarks/linear_cross_entropy.py                                # llama-135m, 4 x 256, CPU
    python benchmarks/linear_cross_entropy.py --preset gpt2-124m --batch-size 8
    python benchmarks/linear_cross_entropy.py --device cuda --batch-size 16 --seq-len 1024
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch
from equal_work import check, cpu_name, exit_status, loss_tolerance, perturb_, ratio_if_equal

from lmforge.config import ModelConfig, OptimConfig
from lmforge.models import PRESETS, build_model
from lmforge.objectives import causal_lm_loss
from lmforge.train.host_memory import keep_freed_memory
from lmforge.train.optim import build_optimizer

PATHS = ("plain", "chunked")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="llama-135m", help="a decoder preset (see `lmforge models`)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--perturb-peer", action="store_true",
                        help="self-check of the benchmark: noise in one weight of the chunked copy, so the "
                             "losses differ, no ratio is printed and the run exits 1")
    parser.add_argument("--memory-only", choices=PATHS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.preset not in PRESETS or PRESETS[args.preset].get("family") not in ("gpt2", "llama", "mistral", "falcon"):
        parser.error(f"--preset: '{args.preset}' is not a decoder preset")
    return args


def setup(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = ModelConfig(preset=args.preset, vocab_size=PRESETS[args.preset].get("vocab_size", 4096),
                      max_seq_len=max(args.seq_len, PRESETS[args.preset].get("max_seq_len", 0)))
    model = build_model(cfg).to(args.device).train()
    window = torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len + 1), device=args.device)
    return model, window[:, :-1], window[:, 1:]


def make_step(model: torch.nn.Module, path: str, inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[], float]:
    optimizer = build_optimizer(model, OptimConfig(name="adamw", lr=3e-4), inputs.device.type)

    def step() -> float:
        if path == "chunked":
            loss = model(inputs, targets_BT=targets)
        else:
            loss = causal_lm_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_mib(args: argparse.Namespace, path: str) -> float:
    """In a child process: two steps of one path, then its peak memory."""
    cmd = [sys.executable, __file__, "--preset", args.preset, "--batch-size", str(args.batch_size),
           "--seq-len", str(args.seq_len), "--device", args.device, "--memory-only", path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def memory_only(args: argparse.Namespace) -> None:
    model, inputs, targets = setup(args)
    step = make_step(model, args.memory_only, inputs, targets)
    for _ in range(2):
        step()
    if args.device.startswith("cuda"):
        print(torch.cuda.max_memory_allocated() / 2**20)
    else:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.device == "cpu":
        keep_freed_memory()  # as `lmforge pretrain` runs on CPU, for both paths and both children
    if args.memory_only:
        memory_only(args)
        return {}
    # Children first: Linux carries a process's peak RSS over into a child it forks, so they
    # must start before this process holds the models.
    peaks = {path: peak_memory_mib(args, path) for path in PATHS}
    model, inputs, targets = setup(args)
    models = {"plain": model, "chunked": copy.deepcopy(model)}
    if args.perturb_peer:
        perturb_(models["chunked"])  # self-check: unequal work on purpose
    steps = {path: make_step(models[path], path, inputs, targets) for path in PATHS}
    seconds: dict[str, list[float]] = {path: [] for path in PATHS}
    losses: dict[str, list[float]] = {path: [] for path in PATHS}
    for round_index in range(1 + args.steps):  # round 0 warms up
        for path in (PATHS if round_index % 2 == 0 else PATHS[::-1]):
            sync(args.device)
            start = time.perf_counter()
            losses[path].append(steps[path]())
            sync(args.device)
            if round_index:
                seconds[path].append(time.perf_counter() - start)
    tokens = args.batch_size * args.seq_len
    loss_gap = max(abs(a - b) for a, b in zip(losses["plain"], losses["chunked"]))
    if any(x != x for x in losses["plain"] + losses["chunked"]):  # a NaN loss matches nothing
        loss_gap = float("nan")
    equal = check(f"{args.preset} max |dloss|", loss_gap, loss_tolerance(losses["plain"] + losses["chunked"], "fp32"))
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else cpu_name()
    result: dict[str, Any] = {
        "benchmark": "linear_cross_entropy", "preset": args.preset, "vocab_size": model.config.vocab_size,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "device": args.device,
        "device_name": device_name, "cpu": cpu_name(),
        "num_threads": torch.get_num_threads(), "torch": torch.__version__,
        "max_abs_loss_diff": loss_gap, "loss_tolerance": equal.tolerance, "equal_outputs": equal.equal,
        "perturbed_peer": args.perturb_peer,
    }
    for path in PATHS:
        median = statistics.median(seconds[path])
        result[path] = {"median_step_seconds": median, "tokens_per_second": tokens / median,
                        "peak_memory_mib": peaks[path]}
    # Both ratios compare the two paths' work, so neither is printed when the losses disagree.
    result["speed_ratio_chunked_over_plain"] = ratio_if_equal(
        equal, result["plain"]["median_step_seconds"] / result["chunked"]["median_step_seconds"])
    result["memory_ratio_chunked_over_plain"] = ratio_if_equal(
        equal, result["chunked"]["peak_memory_mib"] / result["plain"]["peak_memory_mib"])

    print(f"{args.preset} (vocabulary {model.config.vocab_size}), {args.batch_size} x {args.seq_len}, {args.device} "
          f"({device_name}), {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"max |dloss| {loss_gap:.1e} (tolerance {equal.tolerance:.1e})")
    print(f"{'path':<8} {'tokens/s':>9} {'peak MiB':>9}")
    for path in PATHS:
        print(f"{path:<8} {result[path]['tokens_per_second']:>9,.0f} {result[path]['peak_memory_mib']:>9,.0f}")
    if equal.equal:
        print(f"chunked/plain: speed {result['speed_ratio_chunked_over_plain']:.2f}x, "
              f"peak memory {result['memory_ratio_chunked_over_plain']:.2f}x")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    summary = main()
    sys.exit(exit_status([summary]) if summary else 0)  # a --memory-only child returns {}
