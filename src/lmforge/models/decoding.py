"""The CPU decoding fast path, applied to a model from outside: `fast_decoding` swaps its
plain `nn.Linear`s for frozen copies of their weights while a generation runs.

Generation runs the same weights through hundreds of small products (a few rows each), where
a product's fixed cost matters: one product over concatenated weights replaces the several
that read the same input (Q/K/V; gate/up), and the weights may be reordered once into
oneDNN's blocked layout (`FrozenLinear`). The blocks know nothing of this: a module declares
which of its projections share one input as data (`fusable`, e.g. Attention's
`(("q_proj", "k_proj", "v_proj"),)`), and its forward calls each projection as usual; inside
`fast_decoding` the members of a group each return their columns of one shared product.

Only modules whose type is exactly `nn.Linear` (and an `LMHead` whose class overrides
nothing) with no hooks are swapped: a subclass or any other module in a projection slot (a
LoRA or quantised linear, a module with an FSDP hook) is left in place and still called, and a
group with such a member is not fused. On exit every original module is back in its slot;
parameters, their names and the state dict are never touched.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError
from lmforge.models.heads import LMHead


def _packed_linear_available() -> bool:
    """Whether this torch build has the oneDNN linear that torch.compile's CPU backend uses."""
    mkldnn_ops = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available() and hasattr(mkldnn_ops, "_linear_pointwise")
            and hasattr(mkldnn_ops, "_reorder_linear_weight"))


PACKED_LINEAR_ENV = "LMFORGE_PACKED_LINEAR"
PACKED_LINEAR_MODES = ("auto", "on", "off")
# auto's decisions for this process: (out_features, in_features, rows, threads, dtype, has bias)
# -> whether oneDNN's packed product was the faster. Cleared only with the process (or by hand).
_packed_choices: dict[tuple[int, int, int, int, torch.dtype, bool], bool] = {}
_TIMING_WARMUP, _TIMING_CALLS = 3, 5  # calls per kernel; 1-2 ms per new weight shape (see FrozenLinear)


def packed_linear_mode() -> str:
    """`LMFORGE_PACKED_LINEAR` (auto, on or off; unset or empty: auto), read at each use."""
    mode = os.environ.get(PACKED_LINEAR_ENV, "").strip().lower() or "auto"
    if mode not in PACKED_LINEAR_MODES:
        raise ConfigError(f"{PACKED_LINEAR_ENV}={os.environ[PACKED_LINEAR_ENV]!r} is not one of "
                          f"{', '.join(PACKED_LINEAR_MODES)}: set it to one of them or unset it (auto)")
    return mode


def _packed_is_faster(weight: torch.Tensor, packed: torch.Tensor, bias: Optional[torch.Tensor], rows: int) -> bool:
    """Time `F.linear` and oneDNN's packed product on `rows` rows, alternating, a few calls
    each after a warm-up; True when the packed product's fastest call beat F.linear's."""
    # A constant input: no draw from torch's generator, so sampling after this is unchanged.
    x = torch.full((rows, weight.shape[1]), 0.5, dtype=weight.dtype, device=weight.device)
    kernels = (lambda: F.linear(x, weight, bias),
               lambda: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], ""))
    best = [math.inf, math.inf]
    with torch.no_grad():
        for call in range(_TIMING_WARMUP + _TIMING_CALLS):
            for i, kernel in enumerate(kernels):
                start = time.perf_counter()
                kernel()
                if call >= _TIMING_WARMUP:
                    best[i] = min(best[i], time.perf_counter() - start)
    return best[1] < best[0]


class FrozenLinear:
    """y = x W^T + b with W and b read once, for inference: the weights of one or more
    `nn.Linear`s (same input) concatenated along the output (fused Q/K/V, fused gate/up), so
    one matrix product replaces several.

    On CPU in fp32 (autocast off) there are two kernels for the product, and which is faster
    depends on the CPU, the shape, the rows per call and the threads:

    * `F.linear`, i.e. MKL's sgemm on the plain weight;
    * oneDNN on a copy of the weight reordered once into its blocked layout for `rows_hint`
      rows per call (the batch size when decoding; the op torch.compile's CPU backend emits
      for frozen linears): `torch.ops.mkldnn._linear_pointwise`.

    Measured (`benchmarks/packed_linear.py`):

    * AMD EPYC (the dev box), where MKL's sgemm is slow at few rows (it does not take its
      fast paths on AMD): at 8 rows, 1 thread, the 4096x256 head 176 (oneDNN) against 313 us
      (F.linear); llama-quickstart's 17 fused products of a decoding step 1.7 against 3.2 ms
      for its 29 plain ones. At 1 row a lone small product was slower packed (17 against
      6 us) but whole batch-1 decoding steps were faster (2 threads: 2.4 against 3.0 ms; 1
      thread: even).
    * Intel Xeon (KVM, AVX-512/AMX; 2 threads), where MKL picks its AVX-512 kernels and
      oneDNN's fixed cost of about 12 us per call dominates small products: whole greedy
      generations with every weight packed ran at 0.67x (llama-quickstart, batch 1: 577
      against 864 tok/s) and 0.78x (batch 8: 3,534 against 4,509) of F.linear's speed,
      gpt2-quickstart 0.62x / 0.82x. Per product, F.linear won everywhere except the
      4096x256 head at 4-16 rows (8 rows: 133 against 220 us).

    So the choice is timed, not fixed: with `LMFORGE_PACKED_LINEAR=auto` (the default) the
    first FrozenLinear of a shape times both kernels on its own weight at `rows_hint` rows
    (3 warm-up and 5 timed calls each, alternating; the faster fastest call wins, F.linear on
    a tie) and keeps only the winner's copy of the weight. The decision is cached for the
    process, keyed by (out_features, in_features, rows, `torch.get_num_threads()`, dtype,
    whether there is a bias), so identical layers and later generations reuse it (the
    weight copy itself is built per generation). On the Intel machine (2 threads) the timing
    cost 1-2 ms per new shape, mostly first-call set-up: 8 ms for llama-quickstart's 5
    shapes, 4 ms for gpt2-quickstart's 4, once per process and batch size; it chose F.linear
    for every product except the 4096x256 head at 8 rows.
    `LMFORGE_PACKED_LINEAR=on` always packs (the old behaviour), `off` always runs F.linear
    (both still fuse the weights); set one of them for runs that must pick the same kernels
    on every machine and under any load, as auto's timing may choose differently. Read at
    construction; an unknown value raises `ConfigError`.

    The kernels agree to rounding (another summation order), not bit for bit. A snapshot:
    later changes to the Linears' parameters are not seen. Costs one extra copy of the
    weights it covers while it lives.
    """

    def __init__(self, linears: Sequence[nn.Linear], rows_hint: int):
        weights = [linear.weight.detach() for linear in linears]
        weight = weights[0] if len(weights) == 1 else torch.cat(weights)
        biases = [linear.bias for linear in linears]
        self.bias = None if biases[0] is None else torch.cat([b.detach() for b in biases])
        self.packed = None
        mode = packed_linear_mode()
        if (mode != "off" and weight.device.type == "cpu" and weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and _packed_linear_available()):
            # Packed for at least 2 rows even when decoding one: oneDNN's one-row layout was
            # 11-17% slower over whole batch-1 generations (llama/gpt2-quickstart, 2 threads,
            # A/B alternating in one process: 454 against 505 and 559 against 653 tok/s).
            key = (*weight.shape, rows_hint, torch.get_num_threads(), weight.dtype, self.bias is not None)
            faster = True if mode == "on" else _packed_choices.get(key)
            if faster is not False:  # not reordered when F.linear is known to win
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, max(rows_hint, 2))
            if faster is None:
                faster = _packed_choices[key] = _packed_is_faster(weight, self.packed, self.bias, rows_hint)
                if not faster:
                    self.packed = None
        self.weight = None if self.packed is not None else weight  # only one copy is kept

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


class SharedProduct:
    """The product of one input with the concatenated weights of a group of Linears, for the
    group's members (`FrozenProjection`) to take their columns from: computed once per input
    (the members of a group read the same tensor, so the input's identity tells) and split in
    one call, released when every member has read its part. The `FrozenLinear` is built on
    first use, so a module that never runs (a head unused in generation) costs no weight copy
    and no timing."""

    def __init__(self, linears: Sequence[nn.Linear], rows_hint: int):
        self.linears, self.rows_hint = list(linears), rows_hint
        self.sizes = [linear.out_features for linear in self.linears]
        self.frozen: Optional[FrozenLinear] = None
        self.input: Optional[torch.Tensor] = None
        self.parts: Sequence[torch.Tensor] = ()
        self.unread = 0

    def __call__(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if self.frozen is None:
            self.frozen = FrozenLinear(self.linears, self.rows_hint)
        if len(self.sizes) == 1:
            return self.frozen(x)
        if x is not self.input:
            # split_with_sizes: `Tensor.split`'s Python wrapper doubled the cost of the split
            self.input, self.parts, self.unread = x, self.frozen(x).split_with_sizes(self.sizes, -1), len(self.sizes)
        part = self.parts[index]
        self.unread -= 1
        if self.unread == 0:
            self.input, self.parts = None, ()
        return part


class FrozenProjection(nn.Module):
    """Stands in for one `nn.Linear` inside `fast_decoding`: part `index` of a `SharedProduct`.
    With autograd on it runs the original Linear, so gradients still reach the parameters."""

    def __init__(self, original: nn.Linear, product: SharedProduct, index: int = 0):
        super().__init__()
        self.original, self.product, self.index = original, product, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.original(x)
        return self.product(x, self.index)

    # Called straight, past nn.Module's hook dispatch (about 1 us a call, 28 calls per
    # llama-quickstart decoding step): nothing hooks these short-lived stand-ins.
    __call__ = forward


class FrozenHead(nn.Module):
    """Stands in for an `LMHead` inside `fast_decoding`: its logits from a frozen copy of the
    weight (after the head's `logit_scale`); the loss, or anything with autograd on, runs
    the original head."""

    def __init__(self, original: LMHead, rows_hint: int):
        super().__init__()
        self.original, self.product = original, SharedProduct([original], rows_hint)
        self.scaled = original.scaled  # a plain attribute: no nn.Module lookup per step

    def forward(self, h_BTD: torch.Tensor, targets_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        if targets_BT is not None or torch.is_grad_enabled():
            return self.original(h_BTD, targets_BT)
        return self.product(self.scaled(h_BTD), 0)

    __call__ = forward  # as FrozenProjection's


def _swappable(module: nn.Module) -> bool:
    """An exact `nn.Linear` or `LMHead` (no subclass) with no hooks observing its calls."""
    return type(module) in (nn.Linear, LMHead) and not (module._forward_hooks or module._forward_pre_hooks)


def _fused_groups(parent: nn.Module, rows_hint: int) -> dict[str, nn.Module]:
    """Replacements for the members of each group `parent.fusable` declares, when every member
    is a swappable `nn.Linear` and they agree on input width, dtype, device and bias."""
    replacements: dict[str, nn.Module] = {}
    for names in getattr(parent, "fusable", ()):
        linears = [getattr(parent, name) for name in names]
        first = linears[0]
        if not all(type(linear) is nn.Linear and _swappable(linear) and linear.in_features == first.in_features
                   and linear.weight.dtype == first.weight.dtype and linear.weight.device == first.weight.device
                   and (linear.bias is None) == (first.bias is None) for linear in linears):
            continue
        product = SharedProduct(linears, rows_hint)
        for index, (name, linear) in enumerate(zip(names, linears)):
            replacements[name] = FrozenProjection(linear, product, index)
    return replacements


def _replacements(parent: nn.Module, rows_hint: int) -> dict[str, nn.Module]:
    """Every swap among `parent`'s direct children: fused groups first, then single Linears
    and the head."""
    replacements = _fused_groups(parent, rows_hint)
    for name, child in parent.named_children():
        if name in replacements or not _swappable(child):
            continue
        if type(child) is LMHead:
            replacements[name] = FrozenHead(child, rows_hint)
        else:
            replacements[name] = FrozenProjection(child, SharedProduct([child], rows_hint))
    return replacements


@contextmanager
def fast_decoding(model: nn.Module, rows_hint: int) -> Iterator[None]:
    """Within the block, `model`'s plain Linears and head compute with frozen, fused copies of
    their weights whenever autograd is off (`FrozenLinear`, built on first use, `rows_hint`
    the rows per call: the batch size when decoding); on exit the original modules are back.

    For generation (`lmforge.generate`). The weights are read when first used, so changing
    parameters inside the block is not seen by the frozen copies.
    """
    swaps = [(parent, name, getattr(parent, name), replacement)
             for parent in list(model.modules()) for name, replacement in _replacements(parent, rows_hint).items()]
    for parent, name, _, replacement in swaps:
        setattr(parent, name, replacement)
    try:
        yield
    finally:
        for parent, name, original, replacement in reversed(swaps):
            if getattr(parent, name) is replacement:  # an overlapping swap may have replaced it
                setattr(parent, name, original)
