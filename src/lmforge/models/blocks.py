"""Shared transformer blocks: norms, rotary embeddings, attention, MLPs, the pre-norm block.

Every family file only picks among these (a `BlockSpec`); nothing here knows about presets,
nor about generation's fast path (`models.decoding` swaps the linears from outside; modules
only declare which projections share an input, `fusable`).

Shape legend (suffixes on tensor names):
    B batch, T query positions in this call, S key/value positions (cache + new),
    D model width (dim), H query heads, G key/value heads (num_kv_heads), K head width,
    N either H or G, F MLP hidden width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

# (cos, signed_sin) of each query position, see rope_tables: _T1K rows of the tables, or _BT1K
# gathered by position ids
Rope = tuple[torch.Tensor, torch.Tensor]


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


def make_dropout(p: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """nn.Dropout(p), or for p == 0 the identity as a plain function: an nn.Identity is a
    module call (about 1 us on the dev box), paid at every use in every decoding step."""
    return nn.Dropout(p) if p > 0 else _identity


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


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
    rotation (-sin on the first half, +sin on the second) so that applying RoPE is one roll
    and one fused multiply-add (see `apply_rope`).
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
    if cos_T1K.dtype != x_BTNK.dtype:  # checked here: a no-op `.to` still costs a dispatch per call
        cos_T1K, signed_sin_T1K = cos_T1K.to(x_BTNK.dtype), signed_sin_T1K.to(x_BTNK.dtype)
    # (x2, x1) as one op: rolling by K/2 swaps the halves (the same values as chunk + cat;
    # the forward measured 25% faster on a training-sized q, the backward alike, and one
    # dispatch fewer per call in decoding).
    swapped_BTNK = x_BTNK.roll(x_BTNK.shape[-1] // 2, dims=-1)
    return torch.addcmul(x_BTNK * cos_T1K, swapped_BTNK, signed_sin_T1K)


# --------------------------------------------------------------------------- attention


class Attention(nn.Module):
    """Causal (or, with `causal=False`, bidirectional) self-attention with multi-head,
    grouped-query or multi-query heads.

    num_kv_heads == num_heads is MHA (Vaswani et al. 2017), 1 is MQA (Shazeer 2019), anything
    between is GQA (Ainslie et al. 2023). The score kernel is `scaled_dot_product_attention`
    (flash/memory-efficient where available; `enable_gqa` shares each K/V head across its
    query group without materialising copies).

    Q, K and V are separate projections: a fused QKV matmul measured no faster on a CPU
    training step (its backward must concatenate the three gradients), and separate weights
    are what tensor parallelism and LoRA address. They read one input, which the class
    declares (`fusable`), so generation fuses them from outside (`models.decoding`), where one
    product per step instead of three does pay.

    The forward is four steps: project (`project_qkv`), write the KV cache (`write_kv_cache`),
    build one mask (`attention_mask_for`: causal, window, padding, documents, bias) and run
    the kernel (`attend`). With a cache, the new keys/values are written at `start_pos` and
    attention runs over all cached positions: a prefill from position 0 is plain causal
    attention (SDPA's `is_causal`, no mask), a single new token attends to everything, and a
    multi-token chunk after a prefix gets an explicit mask.

    `sliding_window` W > 0 (Longformer, Beltagy et al. 2020; Mistral, Jiang et al. 2023): the
    query at position t attends only to keys in (t-W, t]. While every query can still see all
    earlier keys (at most W positions in all) the `is_causal` fast path runs unchanged; past
    that, an explicit boolean mask, or for one query a slice of the last W keys. The KV cache
    stays preallocated to its full length: keys older than the window are masked, not evicted
    (Mistral's rolling buffer would save memory on long generations, at the cost of a
    position-dependent cache layout).
    """

    fusable: tuple[tuple[str, ...], ...] = (("q_proj", "k_proj", "v_proj"),)

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

    def heads(self, y_BTN: torch.Tensor, num_heads: int) -> torch.Tensor:
        """(B, T, N·K) -> y_BNTK."""
        B, T, _ = y_BTN.shape
        return y_BTN.view(B, T, num_heads, self.head_dim).transpose(1, 2)

    def project_qkv(self, x_BTD: torch.Tensor,
                    rope: Optional[Rope]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q_BHTK, k_BGTK, v_BGTK) of `x_BTD`, queries and keys rotated by `rope`."""
        B, T, _ = x_BTD.shape
        H, G, K = self.num_heads, self.num_kv_heads, self.head_dim
        q_BTHK = self.q_proj(x_BTD).view(B, T, H, K)
        k_BTGK = self.k_proj(x_BTD).view(B, T, G, K)
        if rope is not None:
            q_BTHK, k_BTGK = apply_rope(q_BTHK, *rope), apply_rope(k_BTGK, *rope)
        return q_BTHK.transpose(1, 2), k_BTGK.transpose(1, 2), self.heads(self.v_proj(x_BTD), G)

    def attend(self, q_BHTK: torch.Tensor, k_BGSK: torch.Tensor, v_BGSK: torch.Tensor,
               mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
        """The kernel: `matmul_attention` for an additive (bias) mask and for a CPU decoding
        step (one query, no mask, no autograd), SDPA otherwise. Returns y_BHTK."""
        dropout_p = self.dropout if self.training else 0.0
        decoding_step = q_BHTK.shape[2] == 1 and mask is None and not torch.is_grad_enabled() and q_BHTK.is_cpu
        if decoding_step or (mask is not None and mask.is_floating_point()):
            return matmul_attention(q_BHTK, k_BGSK, v_BGSK, mask, self.scale, dropout_p)
        return F.scaled_dot_product_attention(q_BHTK, k_BGSK, v_BGSK, attn_mask=mask, is_causal=is_causal,
                                              dropout_p=dropout_p, enable_gqa=k_BGSK.shape[1] != q_BHTK.shape[1],
                                              scale=self.scale)

    def merge(self, y_BHTK: torch.Tensor) -> torch.Tensor:
        """The heads back into one stream, through the output projection: out_BTD."""
        B, H, T, K = y_BHTK.shape
        return self.out_proj(y_BHTK.transpose(1, 2).reshape(B, T, H * K))

    def forward(self, x_BTD: torch.Tensor, rope: Optional[Rope] = None,
                cache_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None, start_pos: int = 0,
                key_padding_mask_BS: Optional[torch.Tensor] = None, attn_bias_1HTS: Optional[torch.Tensor] = None,
                document_ids_BS: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`key_padding_mask_BS` (bool or 0/1, True/1 = a real key) and `document_ids_BS` (a
        query attends only to keys of its own document) cover every key position: the cached
        ones and this call's (the queries are the last T). `attn_bias_1HTS` is added to the
        scores before the softmax (T5's relative position bias)."""
        q_BHTK, k_BGSK, v_BGSK = self.project_qkv(x_BTD, rope)
        if cache_kv is not None:
            k_BGSK, v_BGSK = write_kv_cache(cache_kv, k_BGSK, v_BGSK, start_pos)
        T, S = q_BHTK.shape[2], k_BGSK.shape[2]
        unmasked = key_padding_mask_BS is None and document_ids_BS is None and attn_bias_1HTS is None
        if self.causal and T == 1 and 0 < self.sliding_window < S and unmasked:
            # One query: its window is the last W keys, a slice, so no mask is needed.
            k_BGSK, v_BGSK = k_BGSK[:, :, -self.sliding_window:], v_BGSK[:, :, -self.sliding_window:]
            S = self.sliding_window
        mask, is_causal = attention_mask_for(T, S, causal=self.causal, sliding_window=self.sliding_window,
                                             key_padding_mask_BS=key_padding_mask_BS,
                                             document_ids_BS=document_ids_BS, bias_1HTS=attn_bias_1HTS,
                                             dtype=q_BHTK.dtype, device=x_BTD.device)
        return self.merge(self.attend(q_BHTK, k_BGSK, v_BGSK, mask, is_causal))


class CrossAttention(Attention):
    """Cross-attention (Vaswani et al. 2017, sec. 3.2.3): queries from `x_BTD`, keys and values
    from a memory (the encoder output a decoder reads), projected once per source with
    `project_kv` and passed back as `memory_kv`; no causal mask, no RoPE, no cache write.

    Queries and keys/values read different inputs, so nothing is declared fusable."""

    fusable = ()

    def project_kv(self, memory_BSD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (k_BGSK, v_BGSK) of a memory."""
        k_BGSK = self.heads(self.k_proj(memory_BSD), self.num_kv_heads)
        return k_BGSK, self.heads(self.v_proj(memory_BSD), self.num_kv_heads)

    def forward(self, x_BTD: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor],
                key_padding_mask_BS: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`key_padding_mask_BS`: the memory's padding (1 = a real position)."""
        q_BHTK = self.heads(self.q_proj(x_BTD), self.num_heads)
        k_BGSK, v_BGSK = memory_kv
        mask, _ = attention_mask_for(q_BHTK.shape[2], k_BGSK.shape[2], causal=False,
                                     key_padding_mask_BS=key_padding_mask_BS, device=x_BTD.device)
        return self.merge(self.attend(q_BHTK, k_BGSK, v_BGSK, mask, is_causal=False))


def write_kv_cache(cache_kv: tuple[torch.Tensor, torch.Tensor], k_BGTK: torch.Tensor, v_BGTK: torch.Tensor,
                   start_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Write this call's keys/values at [start_pos, start_pos + T) of a layer's preallocated
    cache; returns the cached keys/values of every position so far, (k_BGSK, v_BGSK)."""
    k_cache_BGSK, v_cache_BGSK = cache_kv
    end_pos = start_pos + k_BGTK.shape[2]
    k_cache_BGSK[:, :, start_pos:end_pos] = k_BGTK
    v_cache_BGSK[:, :, start_pos:end_pos] = v_BGTK
    return k_cache_BGSK[:, :, :end_pos], v_cache_BGSK[:, :, :end_pos]


def attention_mask_for(num_queries: int, num_keys: int, *, causal: bool, sliding_window: int = 0,
                       key_padding_mask_BS: Optional[torch.Tensor] = None,
                       document_ids_BS: Optional[torch.Tensor] = None, bias_1HTS: Optional[torch.Tensor] = None,
                       dtype: Optional[torch.dtype] = None,
                       device: Optional[torch.device] = None) -> tuple[Optional[torch.Tensor], bool]:
    """The one mask the kernel takes, and whether SDPA's `is_causal` replaces it: (mask, is_causal).

    The T queries are the last T of the S key positions. `causal`: keys after a query are
    hidden, and with `sliding_window` W > 0 keys W or more positions before it too. Then
    `key_padding_mask_BS` hides padded keys and `document_ids_BS` keys of another document
    (packed sequences). The mask is boolean (True = attend; None when nothing is hidden, and
    with `is_causal` True for a plain causal square), or, with `bias_1HTS`, the additive bias
    in `dtype` with the dtype's minimum where hidden: finite, as HF T5, so a query with no
    visible key gives no NaN.
    """
    T, S = num_queries, num_keys
    window_hides = causal and 0 < sliding_window < S
    others = key_padding_mask_BS is not None or document_ids_BS is not None or bias_1HTS is not None
    if causal and T == S > 1 and not window_hides and not others:
        return None, True
    keep = attention_mask(S - T, T, sliding_window, device) if causal and (T > 1 or window_hides) else None
    if key_padding_mask_BS is not None:
        keep = _both(keep, key_padding_mask_BS.bool()[:, None, None, :])
    if document_ids_BS is not None:
        same_document_BTS = document_ids_BS[:, -T:, None] == document_ids_BS[:, None, :]
        keep = _both(keep, same_document_BTS.unsqueeze(1))
    if bias_1HTS is None:
        return keep, False
    bias = bias_1HTS if dtype is None else bias_1HTS.to(dtype)
    if keep is None:
        return bias, False
    hidden = torch.tensor(torch.finfo(bias.dtype).min, dtype=bias.dtype, device=bias.device)
    return torch.where(keep, bias, hidden), False


def _both(keep: Optional[torch.Tensor], other: torch.Tensor) -> torch.Tensor:
    return other if keep is None else keep & other


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

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.out_proj(F.gelu(self.in_proj(x_BTD), approximate=self.approximate))


class SwiGLUMLP(nn.Module):
    """Gated MLP (silu(x W_gate) * x W_up) W_down (Shazeer 2020, "GLU Variants"), as in Llama.

    Gate and up stay separate Linears: fusing them into one matmul made the CPU training step
    slower (the SiLU and product then run on strided halves, and the backward concatenates
    grads). They read one input (`fusable`), so generation fuses them from outside
    (`models.decoding`).
    """

    fusable: tuple[tuple[str, ...], ...] = (("gate_proj", "up_proj"),)

    def __init__(self, dim: int, hidden_dim: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.out_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def activation(self, gate_BTF: torch.Tensor) -> torch.Tensor:
        return F.silu(gate_BTF)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.activation(self.gate_proj(x_BTD)) * self.up_proj(x_BTD))


class ReluMLP(nn.Module):
    """Two-layer ReLU MLP of the original Transformer (Vaswani et al. 2017) and T5 v1.0
    (Raffel et al. 2020; HF's `DenseReluDense` with `wi`, `wo`)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool):
        super().__init__()
        self.in_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.out_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        # In place: the product's backward needs its input and weight, not its output, so the
        # ReLU can overwrite it (one B·T·F buffer fewer to allocate and write per layer).
        return self.out_proj(F.relu(self.in_proj(x_BTD), inplace=True))


class GeGLUMLP(SwiGLUMLP):
    """GEGLU (Shazeer 2020, "GLU Variants"): (gelu(x W_gate) * x W_up) W_down, with the tanh
    GELU, as T5 v1.1 (`feed_forward_proj="gated-gelu"`, which HF maps to `gelu_new`, the
    tanh approximation; its `wi_0` is our gate, `wi_1` our up projection)."""

    def activation(self, gate_BTF: torch.Tensor) -> torch.Tensor:
        return F.gelu(gate_BTF, approximate="tanh")


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
        self.resid_dropout = make_dropout(dropout)

    def forward(self, x_BTD: torch.Tensor, rope: Optional[Rope] = None,
                cache_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None, start_pos: int = 0,
                key_padding_mask_BS: Optional[torch.Tensor] = None,
                document_ids_BS: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Masks as in `Attention.forward`."""
        h_BTD = self.attn_norm(x_BTD)
        attn_BTD = self.attn(h_BTD, rope, cache_kv, start_pos, key_padding_mask_BS,
                             document_ids_BS=document_ids_BS)
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

    Attention is bidirectional (no causal mask); `key_padding_mask_BT` (1 = real token) keeps
    padded keys out of every query's softmax, `document_ids_BT` keys of other documents. The
    norm names match `TransformerBlock`'s, so weight mappings read alike; here `attn_norm`
    follows the attention branch, not precedes it.
    """

    def __init__(self, spec: BlockSpec, dim: int, num_heads: int, hidden_dim: int, norm_eps: float,
                 bias: bool, dropout: float):
        super().__init__()
        norm_bias = bias if spec.norm_bias is None else spec.norm_bias
        self.attn = Attention(dim, num_heads, num_heads, bias, dropout, causal=False)
        self.attn_norm = make_norm(spec.norm, dim, norm_eps, norm_bias)
        self.mlp = make_mlp(spec.mlp, dim, hidden_dim, bias)
        self.mlp_norm = make_norm(spec.norm, dim, norm_eps, norm_bias)
        self.resid_dropout = make_dropout(dropout)

    def forward(self, x_BTD: torch.Tensor, key_padding_mask_BT: Optional[torch.Tensor] = None,
                document_ids_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        attn_BTD = self.attn(x_BTD, key_padding_mask_BS=key_padding_mask_BT, document_ids_BS=document_ids_BT)
        x_BTD = self.attn_norm(x_BTD + self.resid_dropout(attn_BTD))
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
        self.cross_attn = (CrossAttention(dim, num_heads, num_heads, False, dropout, causal=False,
                                          head_dim=head_dim, scale=1.0) if is_decoder else None)
        self.mlp_norm = make_norm(spec.norm, dim, norm_eps, False)
        self.mlp = make_mlp(spec.mlp, dim, hidden_dim, False)
        self.resid_dropout = make_dropout(dropout)

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
            cross_BTD = self.cross_attn(self.cross_norm(x_BTD), memory_kv, memory_padding_mask_BS)
            x_BTD = x_BTD + self.resid_dropout(cross_BTD)
        return x_BTD + self.resid_dropout(self.mlp(self.mlp_norm(x_BTD)))
