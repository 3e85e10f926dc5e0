"""Shared transformer blocks: norms, rotary embeddings, attention, MLPs, the pre-norm block.

Every family file only picks among these (a `BlockSpec`); nothing here knows about presets.

Shape legend (suffixes on tensor names):
    B batch, T query positions in this call, S key/value positions (cache + new),
    D model width (dim), H query heads, G key/value heads (num_kv_heads), K head width,
    N either H or G, F MLP hidden width.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos_T1K, signed_sin_T1K), see rope_tables
Projection = Callable[[torch.Tensor], torch.Tensor]  # an nn.Linear or a FrozenLinear


@dataclass(frozen=True)
class BlockSpec:
    """Which block variants a family uses; a family file is one of these."""

    norm: Literal["layernorm", "rmsnorm"]
    # gelu_tanh: GPT-2's approximation; gelu: exact (erf); relu: T5 v1.0; geglu: T5 v1.1's gated GELU
    mlp: Literal["gelu_tanh", "gelu", "swiglu", "relu", "geglu"]
    positions: Literal["learned", "rope", "relative"]  # relative: T5's bucketed attention bias
    # sequential: x + attn(norm(x)), then + mlp(norm(.)); parallel: x + attn(norm(x)) + mlp(norm(x))
    # with one shared norm (GPT-J, PaLM sec. 2, Falcon).
    residual: Literal["sequential", "parallel"] = "sequential"
    # None: norms have a bias exactly when the linears do (config `bias`); Falcon's always have one.
    norm_bias: Optional[bool] = None


def make_norm(kind: str, dim: int, eps: float, bias: bool) -> nn.Module:
    """LayerNorm (Ba et al. 2016; bias optional as in GPT-2) or RMSNorm (Zhang & Sennrich 2019).

    torch's own modules (`F.layer_norm`, `F.rms_norm`: native kernels, no Python arithmetic);
    the parameters are named `weight` (and `bias`), which keeps the HF mapping to a rename.
    """
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    return nn.RMSNorm(dim, eps=eps)


# --------------------------------------------------------------------------- rotary embeddings


def rope_tables(head_dim: int, max_seq_len: int, theta: float,
                device: Optional[torch.device] = None) -> Rope:
    """Precompute RoPE (Su et al. 2021, RoFormer) tables for every position, in fp32.

    Uses the "rotate half" pairing (dimension i rotates with i + K/2), as HF Llama does, so
    q/k weights map 1:1 to HF without permuting rows. The sine table carries the sign of the
    rotation (-sin on the first half, +sin on the second) so that applying RoPE is one
    concatenation and one fused multiply-add (see `apply_rope`).
    """
    inv_freq_K2 = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    pos_T = torch.arange(max_seq_len, device=device, dtype=torch.float32)
    angle_TK2 = torch.outer(pos_T, inv_freq_K2)
    cos_TK2, sin_TK2 = angle_TK2.cos(), angle_TK2.sin()
    cos_TK = torch.cat((cos_TK2, cos_TK2), dim=-1)
    signed_sin_TK = torch.cat((-sin_TK2, sin_TK2), dim=-1)
    return cos_TK.unsqueeze(1), signed_sin_TK.unsqueeze(1)


def apply_rope(x_BTNK: torch.Tensor, cos_T1K: torch.Tensor, signed_sin_T1K: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+K/2}) pair by its position's angle: x*cos + rotate_half(x)*sin.

    The fp32 tables are cast to x's dtype (bf16 under autocast) so q and k are not promoted."""
    cos_T1K, signed_sin_T1K = cos_T1K.to(x_BTNK.dtype), signed_sin_T1K.to(x_BTNK.dtype)
    x1_BTNK2, x2_BTNK2 = x_BTNK.chunk(2, dim=-1)
    swapped_BTNK = torch.cat((x2_BTNK2, x1_BTNK2), dim=-1)
    return torch.addcmul(x_BTNK * cos_T1K, swapped_BTNK, signed_sin_T1K)


# --------------------------------------------------------------------------- inference weights


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


class InferenceWeights:
    """A module's `FrozenLinear`s for one generation, each built on first use (so a
    cross-attention, which only projects queries, never builds the fused Q/K/V)."""

    def __init__(self, rows_hint: int):
        self.rows_hint = rows_hint
        self.built: dict[str, FrozenLinear] = {}

    def linear(self, name: str, *linears: nn.Linear) -> FrozenLinear:
        frozen = self.built.get(name)
        if frozen is None:
            frozen = self.built[name] = FrozenLinear(linears, self.rows_hint)
        return frozen


@contextmanager
def inference_weights(model: nn.Module, rows_hint: int) -> Iterator[None]:
    """Within the block, every `Attention` and MLP of `model` computes its projections with
    fused, frozen weights (`FrozenLinear`) whenever autograd is off; on exit they are dropped.

    For generation (`lmforge.generate`), where the same weights serve hundreds of small
    products: parameter names, the state dict and training are untouched. The weights are
    read when first used, so changing parameters inside the block is not seen.
    """
    installed = [(m, InferenceWeights(rows_hint)) for m in model.modules() if isinstance(m, (Attention, *MLP_CLASSES))]
    for module, weights in installed:
        module.frozen = weights
    try:
        yield
    finally:
        for module, weights in installed:
            if module.__dict__.get("frozen") is weights:  # an overlapping block may have replaced it
                del module.frozen  # back to the class default, None


def use_frozen(module: nn.Module) -> Optional[InferenceWeights]:
    """The module's inference weights if it has some, it is in eval mode (the fast path has no
    dropout) and autograd is off (they carry no gradient), else None."""
    frozen = module.frozen
    return frozen if frozen is not None and not module.training and not torch.is_grad_enabled() else None


# --------------------------------------------------------------------------- attention


class Attention(nn.Module):
    """Causal (or, with `causal=False`, bidirectional) self-attention with multi-head,
    grouped-query or multi-query heads; an optional `key_padding_mask_BS` hides padded keys.

    num_kv_heads == num_heads is MHA (Vaswani et al. 2017), 1 is MQA (Shazeer 2019), anything
    between is GQA (Ainslie et al. 2023). The score kernel is `scaled_dot_product_attention`
    (flash/memory-efficient where available; `enable_gqa` shares each K/V head across its
    query group without materialising copies).

    Q, K and V are separate projections: a fused QKV matmul measured no faster on a CPU
    training step (its backward must concatenate the three gradients), and separate weights
    are what tensor parallelism and LoRA address. Generation fuses them on the fly
    (`inference_weights`), where one product per step instead of three does pay.

    With a KV cache, the new keys/values are written at `start_pos` and attention runs over
    all cached positions: a prefill from position 0 is plain causal attention, a single new
    token attends to everything, and a multi-token chunk after a prefix gets an explicit mask.

    `sliding_window` W > 0 (Longformer, Beltagy et al. 2020; Mistral, Jiang et al. 2023): the
    query at position t attends only to keys in (t-W, t]. While every query can still see all
    earlier keys (at most W positions in all) the `is_causal` fast path runs unchanged; past
    that, an explicit boolean mask. The KV cache stays preallocated to its full length: keys
    older than the window are masked, not evicted (Mistral's rolling buffer would save memory
    on long generations, at the cost of a position-dependent cache layout).

    Inside `inference_weights` (generation) the projections use fused, frozen weights.
    """

    frozen: Optional[InferenceWeights] = None  # set by `inference_weights`

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, bias: bool, dropout: float,
                 sliding_window: int = 0, causal: bool = True, head_dim: int = 0,
                 scale: Optional[float] = None):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        # head_dim 0: dim // num_heads; T5 v1.1 sets it apart (d_kv 64 with 6 heads of a 512 stream)
        self.head_dim = head_dim or dim // num_heads
        # None: SDPA's 1/sqrt(K); T5 passes 1.0 (its init folds the scaling into q_proj)
        self.scale = scale
        self.dropout = dropout
        self.sliding_window = sliding_window
        self.causal = causal  # False: bidirectional (BERT encoder), every query sees every key
        self.q_proj = nn.Linear(dim, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.head_dim, dim, bias=bias)

    def project_kv(self, memory_BSD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (k_BGSK, v_BGSK) of a memory, e.g. the encoder output a decoder's
        cross-attention reads: computed once per source and passed back as `memory_kv`."""
        B, S, _ = memory_BSD.shape
        G, K = self.num_kv_heads, self.head_dim
        k_BGSK = self.k_proj(memory_BSD).view(B, S, G, K).transpose(1, 2)
        v_BGSK = self.v_proj(memory_BSD).view(B, S, G, K).transpose(1, 2)
        return k_BGSK, v_BGSK

    def forward(self, x_BTD: torch.Tensor, rope: Optional[Rope] = None,
                cache_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                start_pos: int = 0, key_padding_mask_BS: Optional[torch.Tensor] = None,
                attn_bias_1HTS: Optional[torch.Tensor] = None,
                memory_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """`key_padding_mask_BS` (bool or 0/1, True/1 = a real key): padded keys get no attention.

        `attn_bias_1HTS`: added to the scores before the softmax (T5's relative position bias).
        `memory_kv`: cross-attention (Vaswani et al. 2017, sec. 3.2.3): queries from `x_BTD`,
        keys/values the given `project_kv` output; no causal mask, no RoPE, no cache write.
        """
        B, T, _ = x_BTD.shape
        H, G, K = self.num_heads, self.num_kv_heads, self.head_dim
        causal = self.causal and memory_kv is None
        frozen = use_frozen(self)
        if memory_kv is not None:
            q_proj = self.q_proj if frozen is None else frozen.linear("q", self.q_proj)
            q_BHTK = q_proj(x_BTD).view(B, T, H, K).transpose(1, 2)
            k_BGSK, v_BGSK = memory_kv
        elif frozen is not None:
            # One product for Q, K and V; RoPE rotates Q and K heads together (same positions).
            qkv_BTNK = frozen.linear("qkv", self.q_proj, self.k_proj, self.v_proj)(x_BTD).view(B, T, H + 2 * G, K)
            qk_BTNK, v_BTGK = qkv_BTNK.split((H + G, G), dim=2)
            if rope is not None:
                qk_BTNK = apply_rope(qk_BTNK, *rope)
            qk_BNTK = qk_BTNK.transpose(1, 2)
            q_BHTK, k_BGSK, v_BGSK = qk_BNTK[:, :H], qk_BNTK[:, H:], v_BTGK.transpose(1, 2)
        else:
            q_BTHK = self.q_proj(x_BTD).view(B, T, H, K)
            k_BTGK = self.k_proj(x_BTD).view(B, T, G, K)
            v_BTGK = self.v_proj(x_BTD).view(B, T, G, K)
            if rope is not None:
                q_BTHK, k_BTGK = apply_rope(q_BTHK, *rope), apply_rope(k_BTGK, *rope)
            q_BHTK, k_BGSK, v_BGSK = q_BTHK.transpose(1, 2), k_BTGK.transpose(1, 2), v_BTGK.transpose(1, 2)

        end_pos = start_pos + T
        if cache_kv is not None and memory_kv is None:
            k_cache_BGSK, v_cache_BGSK = cache_kv
            k_cache_BGSK[:, :, start_pos:end_pos] = k_BGSK
            v_cache_BGSK[:, :, start_pos:end_pos] = v_BGSK
            k_BGSK, v_BGSK = k_cache_BGSK[:, :, :end_pos], v_cache_BGSK[:, :, :end_pos]

        mask_TS = None
        is_causal = causal and T > 1
        window_reached = 0 < self.sliding_window < end_pos
        if (frozen is not None and causal and T == 1 and window_reached and key_padding_mask_BS is None
                and attn_bias_1HTS is None):
            # One query: its window is the last W keys, a slice, so no mask is needed.
            k_BGSK, v_BGSK = k_BGSK[:, :, -self.sliding_window:], v_BGSK[:, :, -self.sliding_window:]
            window_reached = False
        # SDPA's is_causal aligns the mask top-left; after a prefix it must be bottom-right.
        if causal and (window_reached or (start_pos > 0 and T > 1)):
            mask_TS = attention_mask(start_pos, T, self.sliding_window, x_BTD.device)
            is_causal = False
        if key_padding_mask_BS is not None:  # SDPA takes a mask or is_causal, not both
            if is_causal:
                mask_TS = attention_mask(start_pos, T, self.sliding_window, x_BTD.device)
                is_causal = False
            keep_B11S = key_padding_mask_BS.bool()[:, None, None, :]
            mask_TS = keep_B11S if mask_TS is None else mask_TS & keep_B11S
        if attn_bias_1HTS is not None:  # one additive float mask: bias, and the dtype's min where hidden
            if is_causal:
                mask_TS = attention_mask(start_pos, T, self.sliding_window, x_BTD.device)
                is_causal = False
            bias = attn_bias_1HTS.to(q_BHTK.dtype)
            if mask_TS is not None:  # finite, as HF T5: a row with no visible key gives no NaN
                hidden = torch.tensor(torch.finfo(bias.dtype).min, dtype=bias.dtype, device=bias.device)
                bias = torch.where(mask_TS, bias, hidden)
            mask_TS = bias

        if attn_bias_1HTS is not None or (frozen is not None and T == 1 and mask_TS is None):
            y_BHTK = matmul_attention(q_BHTK, k_BGSK, v_BGSK, mask_TS, self.scale,
                                      self.dropout if self.training else 0.0)
        else:
            y_BHTK = F.scaled_dot_product_attention(
                q_BHTK, k_BGSK, v_BGSK, attn_mask=mask_TS, is_causal=is_causal,
                dropout_p=self.dropout if self.training else 0.0, enable_gqa=G != H, scale=self.scale)
        out_proj = self.out_proj if frozen is None else frozen.linear("out", self.out_proj)
        return out_proj(y_BHTK.transpose(1, 2).reshape(B, T, H * K))


def matmul_attention(q_BHTK: torch.Tensor, k_BGSK: torch.Tensor, v_BGSK: torch.Tensor,
                     bias_1HTS: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v as two batched matrix products; the H/G query heads
    sharing a K/V head (GQA) become extra rows of one product against it.

    Two callers, where it measured faster than `scaled_dot_product_attention` on CPU:
    - a decoding step (T = 1): SDPA's flash kernel is tiled for long query blocks (dev box,
      1 thread, B 8, 8 heads, 4 K/V heads, 32 to 288 keys: 107 against 132 us a call);
    - attention with a learned additive bias (T5's relative positions): the bias needs a
      gradient, which sends SDPA to its math fallback; that fallback multiplies q and k by
      sqrt(scale) even when the scale is 1 and runs a "safe" softmax that scans every row for
      all -inf (3 extra passes over the B·H·T·S scores). Here the bias is finite where it
      hides a key (the dtype's minimum, as HF T5), so the plain softmax is safe.
    """
    B, H, T, K = q_BHTK.shape
    G, S = k_BGSK.shape[1], k_BGSK.shape[2]
    R = H // G  # query heads per K/V head
    scale = K ** -0.5 if scale is None else scale
    if scale != 1.0:  # on q, the smallest operand
        q_BHTK = q_BHTK * scale
    scores_BGNS = torch.matmul(q_BHTK.reshape(B, G, R * T, K), k_BGSK.transpose(-1, -2))
    if bias_1HTS is not None:  # in place: the product's backward needs its inputs, not its output
        scores_BGNS += bias_1HTS.reshape(-1, G, R * T, S)
    probs_BGNS = scores_BGNS.softmax(dim=-1)
    if dropout_p > 0.0:
        probs_BGNS = F.dropout(probs_BGNS, dropout_p)
    return torch.matmul(probs_BGNS, v_BGSK).view(B, H, T, K)


def attention_mask(start_pos: int, num_queries: int, sliding_window: int,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """Boolean mask_TS (True = attend) for queries at positions [start_pos, start_pos + T) over
    keys at [0, start_pos + T): causal (key <= query) and, when `sliding_window` W > 0, within
    the window (query - key < W, i.e. keys in (t-W, t] as in Mistral)."""
    query_pos_T1 = torch.arange(start_pos, start_pos + num_queries, device=device).unsqueeze(1)
    key_pos_1S = torch.arange(start_pos + num_queries, device=device).unsqueeze(0)
    distance_TS = query_pos_T1 - key_pos_1S
    mask_TS = distance_TS >= 0
    if sliding_window > 0:
        mask_TS &= distance_TS < sliding_window
    return mask_TS


# --------------------------------------------------------------------------- MLPs


class GeluMLP(nn.Module):
    """Two-layer MLP with GELU (Hendrycks & Gimpel 2016): the tanh approximation for GPT-2,
    the exact erf form for Falcon."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool, approximate: Literal["tanh", "none"] = "tanh"):
        super().__init__()
        self.in_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.out_proj = nn.Linear(hidden_dim, dim, bias=bias)
        self.approximate = approximate

    frozen: Optional[InferenceWeights] = None  # set by `inference_weights`

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        in_proj, out_proj = frozen_pair(self)
        return out_proj(F.gelu(in_proj(x_BTD), approximate=self.approximate))


class SwiGLUMLP(nn.Module):
    """Gated MLP (silu(x W_gate) * x W_up) W_down (Shazeer 2020, "GLU Variants"), as in Llama.

    Gate and up stay separate Linears: fusing them into one matmul made the CPU training step
    slower (the SiLU and product then run on strided halves, and the backward concatenates
    grads). Generation fuses them on the fly (`inference_weights`).
    """

    def __init__(self, dim: int, hidden_dim: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.out_proj = nn.Linear(hidden_dim, dim, bias=bias)

    frozen: Optional[InferenceWeights] = None  # set by `inference_weights`

    def activation(self, gate_BTF: torch.Tensor) -> torch.Tensor:
        return F.silu(gate_BTF)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        frozen = use_frozen(self)
        if frozen is None:
            return self.out_proj(self.activation(self.gate_proj(x_BTD)) * self.up_proj(x_BTD))
        # Inference: one product for gate and up (their weights concatenated), then split.
        gate_BTF, up_BTF = frozen.linear("gate_up", self.gate_proj, self.up_proj)(x_BTD).chunk(2, dim=-1)
        return frozen.linear("out", self.out_proj)(self.activation(gate_BTF) * up_BTF)


class ReluMLP(nn.Module):
    """Two-layer ReLU MLP of the original Transformer (Vaswani et al. 2017) and T5 v1.0
    (Raffel et al. 2020; HF's `DenseReluDense` with `wi`, `wo`)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool):
        super().__init__()
        self.in_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.out_proj = nn.Linear(hidden_dim, dim, bias=bias)

    frozen: Optional[InferenceWeights] = None  # set by `inference_weights`

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        in_proj, out_proj = frozen_pair(self)
        # In place: the product's backward needs its input and weight, not its output, so the
        # ReLU can overwrite it (one B·T·F buffer fewer to allocate and write per layer).
        return out_proj(F.relu(in_proj(x_BTD), inplace=True))


class GeGLUMLP(SwiGLUMLP):
    """GEGLU (Shazeer 2020, "GLU Variants"): (gelu(x W_gate) * x W_up) W_down, with the tanh
    GELU, as T5 v1.1 (`feed_forward_proj="gated-gelu"`, which HF maps to `gelu_new`, the
    tanh approximation; its `wi_0` is our gate, `wi_1` our up projection)."""

    def activation(self, gate_BTF: torch.Tensor) -> torch.Tensor:
        return F.gelu(gate_BTF, approximate="tanh")


MLP_CLASSES = (GeluMLP, SwiGLUMLP, ReluMLP)  # GeGLUMLP is a SwiGLUMLP


def frozen_pair(mlp: GeluMLP | ReluMLP) -> tuple[Projection, Projection]:
    """A two-layer MLP's (in, out) projections: frozen ones inside `inference_weights`."""
    frozen = use_frozen(mlp)
    if frozen is None:
        return mlp.in_proj, mlp.out_proj
    return frozen.linear("in", mlp.in_proj), frozen.linear("out", mlp.out_proj)


def make_mlp(kind: str, dim: int, hidden_dim: int, bias: bool) -> nn.Module:
    if kind == "swiglu":
        return SwiGLUMLP(dim, hidden_dim, bias)
    if kind == "geglu":
        return GeGLUMLP(dim, hidden_dim, bias)
    if kind == "relu":
        return ReluMLP(dim, hidden_dim, bias)
    return GeluMLP(dim, hidden_dim, bias, approximate="tanh" if kind == "gelu_tanh" else "none")


# --------------------------------------------------------------------------- block


class TransformerBlock(nn.Module):
    """Pre-norm residual block, wired one of two ways (`spec.residual`):

    sequential (GPT-2, Llama, Mistral): x + attn(norm(x)), then x + mlp(mlp_norm(x)).
    parallel (GPT-J; PaLM, Chowdhery et al. 2022, sec. 2; Falcon, Almazrouei et al. 2023):
    x + attn(norm(x)) + mlp(norm(x)), one shared norm, so the two branches can run at once.
    """

    def __init__(self, spec: BlockSpec, dim: int, num_heads: int, num_kv_heads: int, hidden_dim: int,
                 norm_eps: float, bias: bool, dropout: float, sliding_window: int = 0):
        super().__init__()
        norm_bias = bias if spec.norm_bias is None else spec.norm_bias
        self.attn_norm = make_norm(spec.norm, dim, norm_eps, norm_bias)
        self.attn = Attention(dim, num_heads, num_kv_heads, bias, dropout, sliding_window)
        self.mlp_norm = make_norm(spec.norm, dim, norm_eps, norm_bias) if spec.residual == "sequential" else None
        self.mlp = make_mlp(spec.mlp, dim, hidden_dim, bias)
        self.resid_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x_BTD: torch.Tensor, rope: Optional[Rope] = None,
                cache_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                start_pos: int = 0) -> torch.Tensor:
        h_BTD = self.attn_norm(x_BTD)
        attn_BTD = self.attn(h_BTD, rope, cache_kv, start_pos)
        if self.mlp_norm is None:  # parallel: one dropout on the branch sum, as HF Falcon does
            return x_BTD + self.resid_dropout(attn_BTD + self.mlp(h_BTD))
        x_BTD = x_BTD + self.resid_dropout(attn_BTD)
        return x_BTD + self.resid_dropout(self.mlp(self.mlp_norm(x_BTD)))


def residual_init_std(init_std: float, num_layers: int) -> float:
    """GPT-2 (Radford et al. 2019, sec. 2.3): scale residual output projections by 1/sqrt(2L),
    one factor per residual addition (attention and MLP), so the stream's variance stays O(1)."""
    return init_std / math.sqrt(2 * num_layers)


class PostNormBlock(nn.Module):
    """Post-norm encoder block of the original Transformer (Vaswani et al. 2017) and BERT
    (Devlin et al. 2019): x = norm(x + attn(x)), then x = norm(x + mlp(x)).

    Attention is bidirectional (no causal mask); `key_padding_mask_BS` (1 = real token) keeps
    padded keys out of every query's softmax. The norm names match `TransformerBlock`'s, so
    weight mappings read alike; here `attn_norm` follows the attention branch, not precedes it.
    """

    def __init__(self, spec: BlockSpec, dim: int, num_heads: int, hidden_dim: int, norm_eps: float,
                 bias: bool, dropout: float):
        super().__init__()
        norm_bias = bias if spec.norm_bias is None else spec.norm_bias
        self.attn = Attention(dim, num_heads, num_heads, bias, dropout, causal=False)
        self.attn_norm = make_norm(spec.norm, dim, norm_eps, norm_bias)
        self.mlp = make_mlp(spec.mlp, dim, hidden_dim, bias)
        self.mlp_norm = make_norm(spec.norm, dim, norm_eps, norm_bias)
        self.resid_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x_BTD: torch.Tensor, key_padding_mask_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        x_BTD = self.attn_norm(x_BTD + self.resid_dropout(self.attn(x_BTD, key_padding_mask_BS=key_padding_mask_BT)))
        return self.mlp_norm(x_BTD + self.resid_dropout(self.mlp(x_BTD)))


# --------------------------------------------------------------------------- T5 (encoder-decoder)


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of each relative position (key position - query position), int64.

    Raffel et al. 2020 (T5, arXiv 1910.10683, sec. 2.1): each head learns one scalar per
    bucket; buckets are exact for small distances and logarithmically wider up to
    `max_distance`, beyond which all distances share the last bucket. Bidirectional
    (encoder): half the buckets for keys before the query, half (offset by num_buckets/2)
    for keys after it. Unidirectional (decoder): keys after the query all fall in bucket 0
    (they are masked anyway). Within a direction of n buckets, distances d < n/2 get bucket
    d, and larger ones n/2 + floor(log(d / (n/2)) / log(max_distance / (n/2)) * n/2),
    capped at n - 1 (the Mesh TensorFlow rule, which HF T5 reproduces).
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    # clamp only keeps log() finite where the exact branch is taken anyway
    log_ratio = torch.log(distance.clamp(min=max_exact).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (num_buckets - max_exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
    """T5's learned relative position bias: one scalar per (bucket, head), added to the
    attention scores. T5 computes it in the first layer and every layer of the stack reuses
    it; here the stack owns it and passes it to each block. The table is named as HF's
    (`relative_attention_bias`)."""

    def __init__(self, num_heads: int, num_buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def forward(self, num_queries: int, num_keys: int, start_pos: int = 0) -> torch.Tensor:
        """bias_1HTS for queries at [start_pos, start_pos + T) over keys at [0, S)."""
        device = self.relative_attention_bias.weight.device
        query_pos_T1 = torch.arange(start_pos, start_pos + num_queries, device=device).unsqueeze(1)
        key_pos_1S = torch.arange(num_keys, device=device).unsqueeze(0)
        bucket_TS = relative_position_bucket(key_pos_1S - query_pos_T1, self.bidirectional, self.num_buckets,
                                             self.max_distance)
        return self.relative_attention_bias(bucket_TS).permute(2, 0, 1).unsqueeze(0)


class EncoderDecoderBlock(nn.Module):
    """T5's pre-norm block (Raffel et al. 2020, sec. 2.1): x + attn(norm(x)), then (decoder
    only) x + cross_attn(norm(x), encoder output), then x + mlp(norm(x)). RMS norms without
    bias (T5's "layer norm" only rescales), no biases in linears, attention unscaled
    (`scale=1.0`: T5 folds 1/sqrt(K) into the query init) with the stack's relative position
    bias added to the self-attention scores; cross-attention has no position bias.

    The encoder's self-attention is bidirectional, the decoder's causal.
    """

    def __init__(self, spec: BlockSpec, dim: int, num_heads: int, head_dim: int, hidden_dim: int,
                 norm_eps: float, dropout: float, is_decoder: bool):
        super().__init__()
        self.attn_norm = make_norm(spec.norm, dim, norm_eps, False)
        self.attn = Attention(dim, num_heads, num_heads, False, dropout, causal=is_decoder, head_dim=head_dim,
                              scale=1.0)
        self.cross_norm = make_norm(spec.norm, dim, norm_eps, False) if is_decoder else None
        self.cross_attn = (Attention(dim, num_heads, num_heads, False, dropout, causal=False, head_dim=head_dim,
                                     scale=1.0) if is_decoder else None)
        self.mlp_norm = make_norm(spec.norm, dim, norm_eps, False)
        self.mlp = make_mlp(spec.mlp, dim, hidden_dim, False)
        self.resid_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x_BTD: torch.Tensor, attn_bias_1HTS: torch.Tensor,
                key_padding_mask_BS: Optional[torch.Tensor] = None,
                cache_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None, start_pos: int = 0,
                memory_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                memory_padding_mask_BS: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encoder: `key_padding_mask_BS` masks padded inputs. Decoder: `cache_kv`/`start_pos`
        as in `Attention`, `memory_kv` the cross-attention keys/values of the encoder output
        (`self.cross_attn.project_kv`) and `memory_padding_mask_BS` its padding."""
        attn_BTD = self.attn(self.attn_norm(x_BTD), None, cache_kv, start_pos, key_padding_mask_BS,
                             attn_bias_1HTS)
        x_BTD = x_BTD + self.resid_dropout(attn_BTD)
        if self.cross_attn is not None:
            cross_BTD = self.cross_attn(self.cross_norm(x_BTD), key_padding_mask_BS=memory_padding_mask_BS,
                                        memory_kv=memory_kv)
            x_BTD = x_BTD + self.resid_dropout(cross_BTD)
        return x_BTD + self.resid_dropout(self.mlp(self.mlp_norm(x_BTD)))
