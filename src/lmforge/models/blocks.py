"""Shared transformer blocks: norms, rotary embeddings, attention, MLPs, the pre-norm block.

Every family file only picks among these (a `BlockSpec`); nothing here knows about presets.

Shape legend (suffixes on tensor names):
    B batch, T query positions in this call, S key/value positions (cache + new),
    D model width (dim), H query heads, G key/value heads (num_kv_heads), K head width,
    N either H or G, F MLP hidden width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos_T1K, signed_sin_T1K), see rope_tables


@dataclass(frozen=True)
class BlockSpec:
    """Which block variants a family uses; a family file is one of these."""

    norm: Literal["layernorm", "rmsnorm"]
    mlp: Literal["gelu_tanh", "gelu", "swiglu"]  # gelu_tanh: GPT-2's approximation; gelu: exact (erf)
    positions: Literal["learned", "rope"]
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


# --------------------------------------------------------------------------- attention


class Attention(nn.Module):
    """Causal (or, with `causal=False`, bidirectional) self-attention with multi-head,
    grouped-query or multi-query heads; an optional `key_padding_mask_BS` hides padded keys.

    num_kv_heads == num_heads is MHA (Vaswani et al. 2017), 1 is MQA (Shazeer 2019), anything
    between is GQA (Ainslie et al. 2023). The score kernel is `scaled_dot_product_attention`
    (flash/memory-efficient where available; `enable_gqa` shares each K/V head across its
    query group without materialising copies).

    Q, K and V are separate projections: a fused QKV matmul measured no faster on CPU (its
    backward must concatenate the three gradients), and separate weights are what tensor
    parallelism and LoRA address.

    With a KV cache, the new keys/values are written at `start_pos` and attention runs over
    all cached positions: a prefill from position 0 is plain causal attention, a single new
    token attends to everything, and a multi-token chunk after a prefix gets an explicit mask.

    `sliding_window` W > 0 (Longformer, Beltagy et al. 2020; Mistral, Jiang et al. 2023): the
    query at position t attends only to keys in (t-W, t]. While every query can still see all
    earlier keys (at most W positions in all) the `is_causal` fast path runs unchanged; past
    that, an explicit boolean mask. The KV cache stays preallocated to its full length: keys
    older than the window are masked, not evicted (Mistral's rolling buffer would save memory
    on long generations, at the cost of a position-dependent cache layout).
    """

    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, bias: bool, dropout: float,
                 sliding_window: int = 0, causal: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.sliding_window = sliding_window
        self.causal = causal  # False: bidirectional (BERT encoder), every query sees every key
        self.q_proj = nn.Linear(dim, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.head_dim, dim, bias=bias)

    def forward(self, x_BTD: torch.Tensor, rope: Optional[Rope] = None,
                cache_kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                start_pos: int = 0, key_padding_mask_BS: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`key_padding_mask_BS` (bool or 0/1, True/1 = a real key): padded keys get no attention."""
        B, T, _ = x_BTD.shape
        H, G, K = self.num_heads, self.num_kv_heads, self.head_dim
        q_BTHK = self.q_proj(x_BTD).view(B, T, H, K)
        k_BTGK = self.k_proj(x_BTD).view(B, T, G, K)
        v_BTGK = self.v_proj(x_BTD).view(B, T, G, K)
        if rope is not None:
            q_BTHK, k_BTGK = apply_rope(q_BTHK, *rope), apply_rope(k_BTGK, *rope)
        q_BHTK, k_BGSK, v_BGSK = q_BTHK.transpose(1, 2), k_BTGK.transpose(1, 2), v_BTGK.transpose(1, 2)

        end_pos = start_pos + T
        if cache_kv is not None:
            k_cache_BGSK, v_cache_BGSK = cache_kv
            k_cache_BGSK[:, :, start_pos:end_pos] = k_BGSK
            v_cache_BGSK[:, :, start_pos:end_pos] = v_BGSK
            k_BGSK, v_BGSK = k_cache_BGSK[:, :, :end_pos], v_cache_BGSK[:, :, :end_pos]

        mask_TS = None
        is_causal = self.causal and T > 1
        window_reached = 0 < self.sliding_window < end_pos
        # SDPA's is_causal aligns the mask top-left; after a prefix it must be bottom-right.
        if self.causal and (window_reached or (start_pos > 0 and T > 1)):
            mask_TS = attention_mask(start_pos, T, self.sliding_window, x_BTD.device)
            is_causal = False
        if key_padding_mask_BS is not None:  # SDPA takes a mask or is_causal, not both
            if is_causal:
                mask_TS = attention_mask(start_pos, T, self.sliding_window, x_BTD.device)
                is_causal = False
            keep_B11S = key_padding_mask_BS.bool()[:, None, None, :]
            mask_TS = keep_B11S if mask_TS is None else mask_TS & keep_B11S

        y_BHTK = F.scaled_dot_product_attention(
            q_BHTK, k_BGSK, v_BGSK, attn_mask=mask_TS, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=G != H)
        return self.out_proj(y_BHTK.transpose(1, 2).reshape(B, T, H * K))


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

    Gate and up stay separate Linears: fusing them into one matmul made the CPU step slower
    (the SiLU and product then run on strided halves, and the backward concatenates grads).
    """

    def __init__(self, dim: int, hidden_dim: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.out_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.out_proj(F.silu(self.gate_proj(x_BTD)) * self.up_proj(x_BTD))


def make_mlp(kind: str, dim: int, hidden_dim: int, bias: bool) -> nn.Module:
    if kind == "swiglu":
        return SwiGLUMLP(dim, hidden_dim, bias)
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
