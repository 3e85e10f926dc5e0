"""Few-row products: `F.linear` (MKL sgemm) against oneDNN with a packed weight, the op
`FrozenLinear` (lmforge.models.decoding) runs when generating on CPU.

For the products of a decoding step of llama/gpt2-quickstart (the 4096x256 head, fused q/k/v,
gate/up, the MLP and attention output projections) at 1 and 8 rows and 1 and 2 threads, the
two alternate in blocks of calls (A B, then B A, ...) so both see the same machine; the figure
is the fastest block's time per call (the least disturbed on a shared machine), with the median
beside it. The packed weight is laid out for max(rows, 2) rows, as `FrozenLinear` packs it.

Then whole decoding steps' worth of products (4 layers and the head, no attention or norms),
in three forms: HF's (llama: separate q, k, v, gate and up with `F.linear`; gpt2: `Conv1D`'s
`addmm` on an (in, out) matrix, q/k/v already fused), lmforge's fused products with `F.linear`,
and lmforge's fused products packed for oneDNN (what generation runs): the first ratio is
what fusing gains, the second what packing gains.

Last, whole greedy generations (`lmforge.generate`, 32-token prompt, `--generate-tokens` new
tokens) of llama/gpt2-quickstart with the packing on and off for every weight
(`LMFORGE_PACKED_LINEAR=on` / `off`, not the default per-weight timed choice; off: `FrozenLinear`
runs `F.linear` on the same fused weights), alternating, median of 6: what the packing is worth in
the loop the generation benchmark times. Prints the CPU and torch version, three tables, then
one JSON line.

    python benchmarks/packed_linear.py
    python benchmarks/packed_linear.py --rows 1,2,8 --threads 1 --repeats 11
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from equal_work import cpu_name

import lmforge.models.decoding as decoding
from lmforge.config import ModelConfig, load_config
from lmforge.generate import generate
from lmforge.models import build_model

# (name, out_features, in_features): llama-quickstart (dim 256, 4 KV heads of 8, hidden 704)
# and gpt2-quickstart (hidden 1024), vocabulary 4096.
SHAPES = [("head", 4096, 256), ("gpt2 qkv", 768, 256), ("llama qkv", 512, 256), ("llama gate+up", 1408, 256),
          ("llama down", 256, 704), ("gpt2 mlp in", 1024, 256), ("gpt2 mlp out", 256, 1024), ("attn out", 256, 256)]


# Per layer: (out, in) of each product. llama-quickstart: dim 256, 8 heads of 32, 4 KV heads,
# MLP hidden 704; gpt2-quickstart: dim 256, MLP hidden 1024 (with biases). 4 layers, head 4096x256.
STEPS = {
    "llama-quickstart": {"hf": [(256, 256), (128, 256), (128, 256), (256, 256), (704, 256), (704, 256), (256, 704)],
                         "fused": [(512, 256), (256, 256), (1408, 256), (256, 704)], "bias": False},
    "gpt2-quickstart": {"hf": [(768, 256), (256, 256), (1024, 256), (256, 1024)],
                        "fused": [(768, 256), (256, 256), (1024, 256), (256, 1024)], "bias": True},
}
LAYERS, VOCAB, DIM = 4, 4096, 256


def step_products(model: str, rows: int) -> dict:
    """Three callables running one decoding step's products of `model` at `rows` rows."""
    spec = STEPS[model]
    make = lambda shapes: [(torch.randn(o, i) * 0.02, torch.randn(o) * 0.02 if spec["bias"] else None,  # noqa: E731
                            torch.randn(rows, i)) for _ in range(LAYERS) for o, i in shapes]
    hf, fused = make(spec["hf"]), make(spec["fused"])
    head, x_head = torch.randn(VOCAB, DIM) * 0.02, torch.randn(rows, DIM)
    if model.startswith("gpt2"):  # HF GPT-2's Conv1D: addmm(bias, x, W) with W stored (in, out)
        conv = [(w.t().contiguous(), b, x) for w, b, x in hf]
        hf_step = lambda: ([torch.addmm(b, x, w) for w, b, x in conv], F.linear(x_head, head))  # noqa: E731
    else:
        hf_step = lambda: ([F.linear(x, w, b) for w, b, x in hf], F.linear(x_head, head))  # noqa: E731
    packed = [(torch.ops.mkldnn._reorder_linear_weight(w, max(rows, 2)), b, x) for w, b, x in fused]
    packed_head = torch.ops.mkldnn._reorder_linear_weight(head, max(rows, 2))
    pointwise = torch.ops.mkldnn._linear_pointwise
    return {"hf": hf_step,
            "fused F.linear": lambda: ([F.linear(x, w, b) for w, b, x in fused], F.linear(x_head, head)),
            "fused oneDNN": lambda: ([pointwise(x, w, b, "none", [], "") for w, b, x in packed],
                                     pointwise(x_head, packed_head, None, "none", [], ""))}


def alternate(ops: dict, x, calls: int, repeats: int) -> dict[str, list[float]]:
    """Per-call seconds of each op over `repeats` blocks, the order reversed every other block."""
    times: dict[str, list[float]] = {k: [] for k in ops}
    for repeat in range(repeats):
        for key in (list(ops) if repeat % 2 == 0 else list(ops)[::-1]):
            times[key].append(per_call_seconds(ops[key], x, calls))
    return times


def generation_ab(model_name: str, batch: int, new_tokens: int, repeats: int = 6) -> dict:
    """Tokens/s of greedy generation with FrozenLinear's oneDNN packing on and off, alternating."""
    torch.manual_seed(0)
    model = build_model(load_config(ModelConfig, None, {"preset": model_name, "vocab_size": VOCAB,
                                                        "max_seq_len": max(256, 32 + new_tokens)})).eval()
    prompt = torch.randint(0, VOCAB, (1, 32), generator=torch.Generator().manual_seed(0)).expand(batch, -1)
    mode = os.environ.get(decoding.PACKED_LINEAR_ENV)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    tokens: dict[bool, torch.Tensor] = {}
    try:
        for repeat in range(repeats + 1):  # the first round warms up
            for packed in ((True, False) if repeat % 2 == 0 else (False, True)):
                # every weight packed, or none (not auto's per-weight choice)
                os.environ[decoding.PACKED_LINEAR_ENV] = "on" if packed else "off"
                start = time.perf_counter()
                tokens[packed] = torch.stack(list(generate(model, prompt.contiguous(), new_tokens, temperature=0.0)), 1)
                if repeat:
                    seconds[packed].append(time.perf_counter() - start)
    finally:
        if mode is None:
            os.environ.pop(decoding.PACKED_LINEAR_ENV, None)
        else:
            os.environ[decoding.PACKED_LINEAR_ENV] = mode
    rate = {k: batch * new_tokens / statistics.median(v) for k, v in seconds.items()}
    return {"model": model_name, "batch": batch, "threads": torch.get_num_threads(), "new_tokens": new_tokens,
            "packed_tokens_per_s": round(rate[True]), "f_linear_tokens_per_s": round(rate[False]),
            "packed_over_f_linear": round(rate[True] / rate[False], 2),
            "same_tokens": torch.equal(tokens[True], tokens[False])}


def per_call_seconds(fn, x: torch.Tensor, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per op")
    parser.add_argument("--block-ms", type=float, default=10.0, help="about how long one block of calls runs")
    parser.add_argument("--generate-tokens", type=int, default=96,
                        help="new tokens per generation in the packing on/off comparison (0 skips it)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    machine = f"{cpu_name()}; torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"
    print(machine)
    print(f"{'product':<14}{'out x in':>11}{'rows':>5}{'threads':>8}{'F.linear us':>13}{'oneDNN us':>11}"
          f"{'F/oneDNN':>10}  (median us: F, oneDNN)")
    rows_out = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name, n_out, n_in in SHAPES:
            weight = torch.randn(n_out, n_in) * 0.02
            for rows in [int(r) for r in args.rows.split(",")]:
                x = torch.randn(rows, n_in)
                packed = torch.ops.mkldnn._reorder_linear_weight(weight, max(rows, 2))
                ops = {"F.linear": lambda x: F.linear(x, weight),
                       "oneDNN": lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")}
                torch.testing.assert_close(ops["oneDNN"](x), ops["F.linear"](x))  # the same product
                for fn in ops.values():  # warm up, and size a block of calls to about --block-ms
                    per_call_seconds(fn, x, 20)
                calls = max(10, int(args.block_ms / 1e3 / per_call_seconds(ops["F.linear"], x, 50)))
                times = alternate(ops, x, calls, args.repeats)
                best = {k: min(v) * 1e6 for k, v in times.items()}
                median = {k: statistics.median(v) * 1e6 for k, v in times.items()}
                row = {"product": name, "out": n_out, "in": n_in, "rows": rows, "threads": threads,
                       "f_linear_us": round(best["F.linear"], 2), "onednn_us": round(best["oneDNN"], 2),
                       "f_linear_median_us": round(median["F.linear"], 2),
                       "onednn_median_us": round(median["oneDNN"], 2),
                       "f_linear_over_onednn": round(best["F.linear"] / best["oneDNN"], 2)}
                rows_out.append(row)
                print(f"{name:<14}{f'{n_out}x{n_in}':>11}{rows:>5}{threads:>8}{row['f_linear_us']:>13.1f}"
                      f"{row['onednn_us']:>11.1f}{row['f_linear_over_onednn']:>10.2f}  "
                      f"({row['f_linear_median_us']:.1f}, {row['onednn_median_us']:.1f})", flush=True)
    print(f"\n{'decoding step products':<24}{'rows':>5}{'threads':>8}{'HF us':>9}{'fused F us':>12}"
          f"{'fused oneDNN us':>17}{'HF/fusedF':>11}{'fusedF/oneDNN':>15}")
    steps_out = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for model in STEPS:
            for rows in [int(r) for r in args.rows.split(",")]:
                ops = {k: (lambda fn: lambda _: fn())(fn) for k, fn in step_products(model, rows).items()}
                for fn in ops.values():
                    per_call_seconds(fn, None, 5)
                calls = max(3, int(args.block_ms / 1e3 / per_call_seconds(ops["hf"], None, 10)))
                best = {k: min(v) * 1e6 for k, v in alternate(ops, None, calls, args.repeats).items()}
                row = {"model": model, "rows": rows, "threads": threads, "hf_us": round(best["hf"], 1),
                       "fused_f_linear_us": round(best["fused F.linear"], 1),
                       "fused_onednn_us": round(best["fused oneDNN"], 1),
                       "fusing_gain": round(best["hf"] / best["fused F.linear"], 2),
                       "packing_gain": round(best["fused F.linear"] / best["fused oneDNN"], 2)}
                steps_out.append(row)
                print(f"{model:<24}{rows:>5}{threads:>8}{row['hf_us']:>9.0f}{row['fused_f_linear_us']:>12.0f}"
                      f"{row['fused_onednn_us']:>17.0f}{row['fusing_gain']:>11.2f}{row['packing_gain']:>15.2f}",
                      flush=True)
    generations = []
    if args.generate_tokens:
        print(f"\n{'generation':<18}{'batch':>6}{'threads':>8}{'packed tok/s':>14}{'F.linear tok/s':>16}"
              f"{'packed/F.linear':>17}  same tokens")
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for model in STEPS:
                for batch in [int(r) for r in args.rows.split(",")]:
                    row = generation_ab(model, batch, args.generate_tokens)
                    generations.append(row)
                    print(f"{model:<18}{batch:>6}{threads:>8}{row['packed_tokens_per_s']:>14,}"
                          f"{row['f_linear_tokens_per_s']:>16,}{row['packed_over_f_linear']:>17.2f}  "
                          f"{row['same_tokens']}", flush=True)
    summary = {"benchmark": "packed_linear", "cpu": cpu_name(), "torch": torch.__version__,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "rows": rows_out, "steps": steps_out,
               "generations": generations}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
