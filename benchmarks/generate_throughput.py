"""Generation throughput: lmforge's KV-cache loop against HF `generate`, same model, same prompt.

Both libraries get the identical model (our weights copied into the HF class by
`lmforge.interop.hf`), the same prompt repeated over the batch, greedy decoding and exactly
`--new-tokens` new tokens (no early stop). A T5 preset (e.g. t5-quickstart) compares
`generate_seq2seq` with HF `T5ForConditionalGeneration.generate`: the prompt is the encoder
input and decoding starts from token 0. Runs alternate between the two libraries so both
see the same machine noise; the figure is the median over `--repeats`. The generated tokens
must be identical (greedy decoding of the same model): the benchmark checks it for every
config and batch size, and where they differ it prints "outputs differ: ...", leaves that
row's ratio out (table "-", JSON null, `equal_outputs: false`) and exits with status 1 after
the table and the JSON line (`equal_work`). `--perturb-peer PRESETS` adds noise to one weight
of HF's copy for those presets: a self-check that the guard trips, not a measurement.

Prints a header naming the CPU (or GPU) and torch version, a table, then one JSON line with
every figure and the lmforge/HF ratios.

    python benchmarks/generate_throughput.py                        # CPU: llama and gpt2 quickstart sizes
    python benchmarks/generate_throughput.py --configs t5-quickstart --batch-sizes 8
    python benchmarks/generate_throughput.py --configs gpt2-124m --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable

import torch
from equal_work import check, cpu_name, exit_status, format_ratio, perturb_, ratio_if_equal

from lmforge.config import ModelConfig, load_config
from lmforge.generate import generate, generate_seq2seq
from lmforge.interop.hf import to_hf_model
from lmforge.models import build_model, count_parameters


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="llama-quickstart,gpt2-quickstart",
                        help="comma-separated presets (see `lmforge models`)")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per library and setting")
    parser.add_argument("--vocab-size", type=int, default=4096, help="for presets that take it from a tokenizer")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perturb-peer", default="",
                        help="self-check of the benchmark: comma-separated presets whose HF copy gets noise "
                             "in one weight (a projection of its last block), so their tokens differ, no ratio is "
                             "printed and the run exits 1")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    args.perturb_peer = [name.strip() for name in args.perturb_peer.split(",") if name.strip()]
    for name in args.perturb_peer:
        if name not in args.configs:
            parser.error(f"--perturb-peer: '{name}' is not in --configs")
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def bench_config(name: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    torch.manual_seed(args.seed)
    length = args.prompt_len + args.new_tokens

    cfg = load_config(ModelConfig, None, {"preset": name, "max_seq_len": max(length, 64),
                                          **({"vocab_size": args.vocab_size} if "quickstart" in name else {})})
    ours = build_model(cfg).to(device).eval()
    theirs = to_hf_model(ours.cpu()).to(device).eval()
    if name in args.perturb_peer:
        perturb_(theirs, seed=args.seed)  # self-check: unequal work on purpose
    ours.to(device)
    vocab = ours.config.vocab_size
    seq2seq = ours.config.family == "t5"
    theirs.generation_config.eos_token_id = None  # exactly --new-tokens, no token suppressed as eos
    prompt_1T = torch.randint(0, vocab, (1, args.prompt_len), generator=torch.Generator().manual_seed(args.seed))
    results = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        prompt_BT = prompt_1T.expand(batch_size, -1).contiguous().to(device)

        def run_ours() -> torch.Tensor:
            if seq2seq:
                steps = generate_seq2seq(ours, prompt_BT, args.new_tokens, temperature=0.0, decoder_start_id=0)
            else:
                steps = generate(ours, prompt_BT, args.new_tokens, temperature=0.0)
            return torch.stack(list(steps), dim=1)

        def run_hf() -> torch.Tensor:
            extra = {"decoder_start_token_id": 0} if seq2seq else {}
            with torch.inference_mode():
                out = theirs.generate(prompt_BT, attention_mask=torch.ones_like(prompt_BT), do_sample=False,
                                      max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                      pad_token_id=0, eos_token_id=None, **extra)
            # decoder-only: prompt + new tokens; seq2seq: the start token + new tokens
            return out[:, 1:] if seq2seq else out[:, args.prompt_len:]

        run_ours(), run_hf()  # warm-up
        times: dict[str, list[float]] = {"lmforge": [], "hf": []}
        outputs: dict[str, torch.Tensor] = {}
        for repeat in range(args.repeats):
            order = [("lmforge", run_ours), ("hf", run_hf)]
            for lib, fn in order if repeat % 2 == 0 else order[::-1]:
                seconds, outputs[lib] = timed(fn, device)
                times[lib].append(seconds)
        ours_tokens, hf_tokens = outputs["lmforge"].cpu(), outputs["hf"].cpu()
        # Greedy decoding of one model: every token must match (tolerance 0 mismatches).
        mismatched = (int((ours_tokens != hf_tokens).sum()) if ours_tokens.shape == hf_tokens.shape
                      else max(ours_tokens.numel(), hf_tokens.numel()))
        equal = check(f"{name} batch {batch_size} mismatched tokens", mismatched, 0)
        new_tokens = batch_size * args.new_tokens
        row = {"config": name, "num_params": count_parameters(ours), "batch_size": batch_size,
               "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "identical_tokens": equal.equal,
               "mismatched_tokens": mismatched, "equal_outputs": equal.equal,
               "perturbed_peer": name in args.perturb_peer}
        for lib in times:
            median = statistics.median(times[lib])
            row[lib] = {"median_seconds": median, "tokens_per_second": new_tokens / median}
        row["speed_ratio_lmforge_over_hf"] = ratio_if_equal(
            equal, row["hf"]["median_seconds"] / row["lmforge"]["median_seconds"])
        results.append(row)
        print(f"{name} batch {batch_size}: done", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    import transformers

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    from lmforge.models.decoding import packed_linear_mode

    # FrozenLinear's kernel choice (auto: timed per weight shape) changes lmforge's figures
    machine = (f"device {device} ({device_name}), {torch.get_num_threads()} threads; "
               f"torch {torch.__version__}, transformers {transformers.__version__}; "
               f"LMFORGE_PACKED_LINEAR={packed_linear_mode()}")
    print(machine, flush=True)
    results = [row for name in args.configs for row in bench_config(name, args, device)]
    # The ratio column only when some row did equal work; "-" for those that did not.
    with_ratio = any(r["equal_outputs"] for r in results)
    print(machine)  # the table's header: every figure names its machine
    print(f"{'config':<18}{'batch':>6}{'lmforge tok/s':>15}{'HF tok/s':>11}"
          f"{'lmforge/HF':>12}{'same tokens':>13}" if with_ratio else
          f"{'config':<18}{'batch':>6}{'lmforge tok/s':>15}{'HF tok/s':>11}{'same tokens':>13}")
    for r in results:
        ratio = f"{format_ratio(r['speed_ratio_lmforge_over_hf']):>12}" if with_ratio else ""
        print(f"{r['config']:<18}{r['batch_size']:>6}{r['lmforge']['tokens_per_second']:>15,.0f}"
              f"{r['hf']['tokens_per_second']:>11,.0f}{ratio}{str(r['identical_tokens']):>13}")
    summary = {"benchmark": "generate_throughput", "device": str(device), "device_name": device_name,
               "cpu": cpu_name(), "num_threads": torch.get_num_threads(), "torch": torch.__version__,
               "transformers": transformers.__version__, "packed_linear": packed_linear_mode(),
               "equal_outputs": all(r["equal_outputs"] for r in results),
               "ratios": {f"{r['config']}@b{r['batch_size']}": r["speed_ratio_lmforge_over_hf"]
                          for r in results},  # null: unequal work
               "results": results}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(exit_status(main()["results"]))
