"""Peak memory and tokens/s of full fine-tuning, LoRA and QLoRA, beside peft + transformers.

Four configurations train the same model (lmforge's init under seed 0; `peft`'s copy is the
same weights mapped into the HF class by `lmforge.interop.hf.to_hf_model`, the in-memory form
of `lmforge convert --to hf`) on the same random batch, with AdamW (lr 1e-4) over the trainable
parameters and fp32 on the CPU:

- ``full``: every parameter trained;
- ``lora``: rank-r LoRA on q_proj, v_proj (lmforge.finetune.adapters), the rest frozen;
- ``qlora``: the same LoRA on a base whose block linears are NF4 with double quantisation;
- ``peft``: `peft.get_peft_model` with the same LoRA config on the HF model, loss by
  cross-entropy on its logits (the usual way to train it).

Memory is measured per configuration in a fresh child process (this script re-run with
``--child``), so nothing one configuration allocated is seen by another: the child imports
everything, records its resident set (VmRSS: the baseline), builds the model (and adapters,
quantisation), returns freed memory to the OS (malloc_trim), resets the kernel's peak-RSS mark
(``echo 5 > /proc/self/clear_refs``, which resets VmHWM, the figure ru_maxrss reports) and trains.
"peak" is VmHWM during training minus the baseline: the weights, gradients, optimiser state,
activations and allocator slack of training, not the interpreter and libraries (and not a
transient of building the model, such as QLoRA's float32 weights before quantisation). Where
/proc/self/clear_refs cannot be written, the peak falls back to ru_maxrss (then it includes
the build). The glibc allocator is left at its defaults (no `keep_freed_memory`), for all four.

tokens/s is the batch's tokens over the median wall time of the timed steps (optimiser step
included), after one warm-up step. The configurations run one after another, so on a shared
machine their speeds see different loads: compare ratios from quiet runs only. Full, lora and peft compute the same function at step 0 (LoRA's B is zero), so their
step-0 losses must agree within `equal_work.loss_tolerance`; when lora's and peft's do not,
"outputs differ" is printed, the lora/peft ratio is left out (table "-", JSON null) and the exit
status is 1. QLoRA's loss differs by NF4's rounding and is only shown. ``--perturb-peer`` adds
noise to one weight of peft's copy: a self-check that the guard trips, not a measurement.

Targets (issue 12): LoRA peak at most 0.6x full, QLoRA at most 0.35x, LoRA tokens/s at least
1.0x peft's. Prints a header, a table and one JSON line.

    python benchmarks/finetune_memory.py                   # llama-135m, batch 2 x 128: ~3 minutes on 2 cores
    python benchmarks/finetune_memory.py --quick           # llama-tiny: a smoke test, seconds
    python benchmarks/finetune_memory.py --rounds 3        # interleaved repeats: medians on a noisy machine
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS = ("full", "lora", "qlora", "peft")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="llama-135m", help="a llama-family preset (see `lmforge models`)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after 1 warm-up)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, interleaved (full, lora, qlora, peft, full, "
                             "...); the table shows each one's median tokens/s and peak")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--quick", action="store_true", help="llama-tiny, batch 2 x 16, 1 step: a smoke test")
    parser.add_argument("--perturb-peer", action="store_true",
                        help="self-check: noise in one weight of peft's copy; its loss then differs, no ratio "
                             "is printed and the run exits 1")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.seq_len, args.steps = "llama-tiny", 16, 1
    return args


# --------------------------------------------------------------------------- child: one configuration


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _trim() -> None:
    """Hand memory freed so far back to the OS (glibc), so the resident set is what is in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    _trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _setup(config: str, preset: str, batch_size: int, seq_len: int, rank: int,
           perturb: bool = False) -> tuple[Any, Any, list[Any]]:
    """The model of ``config``, a function computing its loss on the fixed batch, and its
    trainable parameters."""
    import torch
    import torch.nn.functional as F

    from lmforge.config import ModelConfig
    from lmforge.finetune.adapters import apply_adapter
    from lmforge.interop.hf import to_hf_model
    from lmforge.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(preset=preset, max_seq_len=max(seq_len, 16)))
    vocab = model.config.vocab_size
    window = torch.randint(0, vocab, (batch_size, seq_len + 1), generator=torch.Generator().manual_seed(1))
    inputs, targets = window[:, :-1], window[:, 1:]
    lora = {"rank": rank, "alpha": float(2 * rank), "targets": ["q_proj", "v_proj"]}
    if config in ("lora", "qlora"):
        apply_adapter(model, "lora", {**lora, **({"quantize_base": "nf4", "double_quant": True}
                                                 if config == "qlora" else {})})
    if config == "peft":
        import peft

        hf = to_hf_model(model)
        del model
        if perturb:
            from equal_work import perturb_

            perturb_(hf)
        model = peft.get_peft_model(hf.train(), peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                                target_modules=["q_proj", "v_proj"], bias="none"))

        def loss_of() -> torch.Tensor:
            logits = model(input_ids=inputs).logits
            return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    else:
        model.train()

        def loss_of() -> torch.Tensor:
            return model(inputs, targets_BT=targets)
    return model, loss_of, [p for p in model.parameters() if p.requires_grad]


def _train(loss_of: Any, params: list[Any], steps: int) -> tuple[list[float], list[float]]:
    import torch

    optimizer = torch.optim.AdamW(params, lr=1e-4)
    losses, times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        loss = loss_of()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    return losses, times


def child(args: argparse.Namespace) -> dict[str, Any]:
    import gc
    import resource

    import peft  # noqa: F401  (every child imports the same libraries)
    import transformers  # noqa: F401

    # Warm-up on llama-tiny through the same code: libraries load their lazy parts (oneDNN
    # kernels, HF modules) before the baseline is taken, so they count in no configuration.
    _train(*_setup(args.child, "llama-tiny", 2, 16, args.rank)[1:], steps=2)
    gc.collect()
    _reset_peak()
    baseline_kib = _status_kib("VmRSS")
    model, loss_of, params = _setup(args.child, args.preset, args.batch_size, args.seq_len, args.rank,
                                    args.perturb_peer)
    gc.collect()
    _trim()
    model_kib = _status_kib("VmRSS")
    reset = _reset_peak()
    losses, times = _train(loss_of, params, args.steps + 1)
    peak_kib = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": args.child, "trainable": sum(p.numel() for p in params),
            "peak_mib": (peak_kib - baseline_kib) / 1024, "resident_after_build_mib": (model_kib - baseline_kib) / 1024,
            "peak_reset": reset, "baseline_mib": baseline_kib / 1024,
            "tokens_per_s": args.batch_size * args.seq_len / statistics.median(times[1:]), "step0_loss": losses[0],
            "losses": losses}


# --------------------------------------------------------------------------- parent


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's runs as one row: the median tokens/s and peak, each run's tokens/s kept."""
    row = dict(results[0])
    row["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in results)
    row["peak_mib"] = statistics.median(r["peak_mib"] for r in results)
    row["tokens_per_s_runs"] = [r["tokens_per_s"] for r in results]
    return row


def run_child(config: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", config, "--preset", args.preset, "--batch-size",
               str(args.batch_size), "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--rank", str(args.rank)]
    command += ["--perturb-peer"] if args.perturb_peer else []
    proc = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"configuration {config} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from equal_work import check, cpu_name, format_ratio, loss_tolerance, ratio_if_equal

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration {unknown[0]!r}: choose from {', '.join(CONFIGS)}")
    print(f"finetune_memory: {args.preset}, batch {args.batch_size} x {args.seq_len}, {args.steps} timed steps, "
          f"LoRA rank {args.rank} on q_proj,v_proj, fp32; {cpu_name()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {config: [] for config in configs}
    for _ in range(max(args.rounds, 1)):  # interleaved, so a load change hits every configuration alike
        for config in configs:
            runs[config].append(run_child(config, args))
    rows = {config: median_run(results) for config, results in runs.items()}
    full = rows.get("full")
    verdicts = {}
    for config in ("lora", "peft"):
        if config in rows and full is not None:
            verdicts[config] = check(f"{config} vs full step-0 loss",
                                     abs(rows[config]["step0_loss"] - full["step0_loss"]),
                                     loss_tolerance([full["step0_loss"]], "fp32"))
    if "lora" in rows and "peft" in rows:
        verdicts["lora_peft"] = check("lora vs peft step-0 loss", abs(rows["lora"]["step0_loss"] -
                                                                     rows["peft"]["step0_loss"]),
                                      loss_tolerance([rows["lora"]["step0_loss"]], "fp32"))
    equal = all(v.equal for v in verdicts.values())
    print(f"\n{'config':<8}{'trainable':>14}{'peak MiB':>11}{'x full':>8}{'resident MiB':>14}{'tok/s':>9}"
          f"{'step-0 loss':>13}")
    for config, row in rows.items():
        row["peak_vs_full"] = row["peak_mib"] / full["peak_mib"] if full else None
        print(f"{config:<8}{row['trainable']:>14,}{row['peak_mib']:>11.0f}{format_ratio(row['peak_vs_full']):>8}"
              f"{row['resident_after_build_mib']:>14.0f}{row['tokens_per_s']:>9.1f}{row['step0_loss']:>13.6f}")
    lora_vs_peft = None
    if "lora" in rows and "peft" in rows:
        lora_vs_peft = ratio_if_equal(verdicts["lora_peft"], rows["lora"]["tokens_per_s"] / rows["peft"]["tokens_per_s"])
        print(f"\nLoRA tokens/s vs peft: {format_ratio(lora_vs_peft)}x (target >= 1.0)")
    if full:
        for config, target in (("lora", 0.6), ("qlora", 0.35)):
            if config in rows:
                print(f"{config} peak memory vs full fine-tuning: {rows[config]['peak_vs_full']:.2f}x "
                      f"(target <= {target})")
    if not all(row["peak_reset"] for row in rows.values()):
        print("note: /proc/self/clear_refs not writable: peaks are ru_maxrss and include the model build")
    summary = {"preset": args.preset, "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps,
               "rank": args.rank, "rounds": max(args.rounds, 1), "configs": rows, "lora_tokens_per_s_vs_peft": lora_vs_peft,
               "equal_outputs": equal}
    print(json.dumps(summary))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
