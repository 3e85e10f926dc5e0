"""Equal work before a ratio: the check every peer-comparing benchmark runs before it prints one.

A speed ratio between lmforge and a peer means something only when both did the same work,
which the benchmarks verify by comparing outputs (losses step by step, generated tokens,
pipeline output). `check` compares one measured difference with its tolerance; when it is
exceeded it prints

    outputs differ: <what> <value> > tolerance <tol>; no ratio printed

and the caller drops that row's ratio (table cell "-", JSON ratio null, `equal_outputs: false`).
A run that mixes equal and unequal rows prints ratios for the equal ones only, and `exit_status`
(after the table and the final JSON line) exits with status 1 if any row differed.

Loss tolerance (`loss_tolerance`): both sides start from the same weights and batch and take the
same optimiser steps, so their losses differ only by rounding: another summation order in a
matrix product or a reduction. That error is relative to the size of the terms, i.e. to the loss
scale (about ln V at initialisation, the largest loss of a run), and grows slowly over steps.
The bound is `LOSS_RTOL[dtype] * max |loss|` over the run:

* fp32: 1024 x float32 epsilon (1.2e-4 relative, 1.0e-3 at a loss of 8.3). Measured (2-core
  Intel CPU, torch 2.13): lmforge against HF, 2 x 64 tokens, 32 AdamW steps on one batch,
  llama/gpt2/falcon/bert/t5-quickstart: at most 2.6e-6 at a loss of 8.3, 2.6 epsilon relative;
  chunked against plain loss (linear_cross_entropy.py), llama-135m (vocabulary 49152), 1 x 64,
  4 steps: 5.3e-5 at 10.8, 41 epsilon. The bound leaves 25-400x headroom for longer runs and
  larger models, while noise in a single weight (`perturb_`) moved the loss by 10-360x the bound
  within two steps.
* bf16 autocast: 1 x bfloat16 epsilon (7.8e-3 relative). The quickstart runs above under CPU
  autocast measured at most 1.0e-3 relative (0.13 epsilon): every matrix product rounds its
  output to 8 significant bits, and the two libraries round at different places (casts,
  fused ops).

Generation is greedy, so its tokens must be identical (tolerance 0 mismatched tokens).

`--perturb-peer` in the benchmarks is a self-check of this machinery, not a measurement: it
adds noise to one weight of the peer's copy (`perturb_`), so its outputs must differ and the
run must exit 1 without that row's ratio.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import sys
from typing import Any, Iterable

EXIT_UNEQUAL = 1
FLOAT32_EPS = 2.0 ** -23   # torch.finfo(torch.float32).eps
BFLOAT16_EPS = 2.0 ** -7   # torch.finfo(torch.bfloat16).eps
LOSS_RTOL = {"fp32": 1024 * FLOAT32_EPS, "bf16": BFLOAT16_EPS}


@dataclasses.dataclass(frozen=True)
class Check:
    """One row's output comparison: `value` (a difference) against `tolerance`."""

    what: str
    value: float
    tolerance: float

    @property
    def equal(self) -> bool:
        return not math.isnan(self.value) and self.value <= self.tolerance  # NaN is never equal

    def message(self) -> str:
        return f"outputs differ: {self.what} {self.value:.3g} > tolerance {self.tolerance:.3g}; no ratio printed"


def check(what: str, value: float, tolerance: float) -> Check:
    """Compare; print the 'outputs differ' line (stdout, flushed) when the difference is too large."""
    result = Check(what, float(value), float(tolerance))
    if not result.equal:
        print(result.message(), flush=True)
    return result


def loss_tolerance(losses: Iterable[float], dtype: str) -> float:
    """The largest loss difference rounding explains: LOSS_RTOL[dtype] x the run's loss scale."""
    scale = max((abs(x) for x in losses if math.isfinite(x)), default=0.0)
    return LOSS_RTOL[dtype] * scale


def ratio_if_equal(result: Check, ratio: float) -> float | None:
    return ratio if result.equal else None


def format_ratio(ratio: float | None, spec: str = ".2f") -> str:
    return "-" if ratio is None else format(ratio, spec)


def exit_status(rows: Iterable[dict[str, Any]], key: str = "equal_outputs") -> int:
    """0 when every row did equal work, else EXIT_UNEQUAL with a line on stderr saying how many did not."""
    flags = [bool(row[key]) for row in rows]
    unequal = flags.count(False)
    if unequal:
        print(f"{unequal} of {len(flags)} comparisons did unequal work: their ratios were not printed; "
              f"exit status {EXIT_UNEQUAL}", file=sys.stderr)
        return EXIT_UNEQUAL
    return 0


def perturb_(model: Any, scale: float = 10.0, seed: int = 0) -> str:
    """Self-check only: add Gaussian noise of `scale` x its own standard deviation, in place, to
    one weight of `model` (HF or lmforge): the last matrix that is neither an embedding nor the
    head (no vocabulary-sized dimension), typically an output projection of the last block. Returns
    its name.

    Not the head: with tied embeddings a tiny random model's greedy token is the one whose
    embedding its hidden state still resembles (the residual), whatever noise the shared
    matrix gets. Noise at ten times the spread of the last projection swamps the residual
    stream instead: on the six tiny presets and llama/gpt2-quickstart it moved the loss by 7e-3 to
    0.27 within two steps (10 to 360 times the fp32 tolerance), and changed 3 (falcon-tiny) to
    8 of 8 greedy tokens (llama, gpt2, mistral, t5-tiny)."""
    import torch

    embeddings = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    vocab = embeddings[0].num_embeddings  # the token embedding comes first (wte, embed_tokens, shared)
    skip = {id(m.weight) for m in embeddings}
    name, weight = [(n, p) for n, p in model.named_parameters()
                    if p.dim() == 2 and id(p) not in skip and vocab not in p.shape][-1]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
        weight.add_((noise * scale * weight.detach().float().std().item()).to(weight.device, weight.dtype))
    return name


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), with its family/model numbers and
    vector extensions (avx2, avx512, amx), since a VM's name can be generic ("Intel(R) Xeon(R) Processor");
    elsewhere what `platform` knows."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    isa = [x for x, flag in (("avx2", "avx2"), ("avx512", "avx512f"), ("amx", "amx_tile")) if flag in flags]
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']} model {fields['model']}")
    details += [" ".join(isa)] if isa else []
    return f"{name} ({', '.join(details)})" if details else name
