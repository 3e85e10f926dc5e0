"""The decoder-only Transformer every family shares, and its KV cache.

Shape legend (suffixes on tensor names):
    L layers, B batch, T positions in this call, S cache positions, D model width (dim),
    G key/value heads, K head width, V vocabulary.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.linear_cross_entropy import linear_cross_entropy
from lmforge.models.blocks import TransformerBlock, make_norm, residual_init_std, rope_tables
from lmforge.models.presets import FAMILIES, resolve_model_config


class KVCache:
    """Keys and values of every layer for positions [0, length), preallocated to `max_len`.

    The model writes the keys/values of the positions it is given at `length` and then advances
    `length`, so a caller only ever passes the new tokens. With sliding-window attention the
    cache still holds every position (keys older than the window are masked, not dropped):
    simple and exact, at the memory cost of the full length.
    """

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_len: int, head_dim: int,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None):
        shape = (num_layers, batch_size, num_kv_heads, max_len, head_dim)
        self.k_LBGSK = torch.zeros(shape, device=device, dtype=dtype)
        self.v_LBGSK = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k_LBGSK.shape[3]

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k_LBGSK[index], self.v_LBGSK[index]

    def reset(self) -> None:
        self.length = 0


class Transformer(nn.Module):
    """Token embedding (+ learned positions for GPT-2), pre-norm blocks (sequential or parallel
    residual), final norm, output head.

    `forward(input_ids_BT, kv_cache=None) -> logits_BTV`. With a cache, `input_ids_BT` are the
    tokens after the `kv_cache.length` already cached ones.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg = resolve_model_config(cfg)
        self.config = cfg
        spec = FAMILIES[cfg.family]
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_embeddings = nn.Embedding(cfg.max_seq_len, cfg.dim) if spec.positions == "learned" else None
        self.embed_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(
            TransformerBlock(spec, cfg.dim, cfg.num_heads, cfg.num_kv_heads, cfg.hidden_dim, cfg.norm_eps,
                             cfg.bias, cfg.dropout, cfg.sliding_window)
            for _ in range(cfg.num_layers))
        norm_bias = cfg.bias if spec.norm_bias is None else spec.norm_bias
        self.norm = make_norm(spec.norm, cfg.dim, cfg.norm_eps, norm_bias)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            # Press & Wolf 2017: one matrix embeds and un-embeds; GPT-2 and small Llamas do this.
            self.output.weight = self.tok_embeddings.weight
        self.use_rope = spec.positions == "rope"
        self.init_weights()

    @property
    def head_dim(self) -> int:
        return self.config.dim // self.config.num_heads

    def init_rope(self) -> None:
        """(Re)compute the RoPE tables: non-persistent buffers, so also after `to_empty()`."""
        if self.use_rope:
            cos_T1K, sin_T1K = rope_tables(self.head_dim, self.config.max_seq_len, self.config.rope_theta,
                                           device=self.tok_embeddings.weight.device)
            self.register_buffer("rope_cos_T1K", cos_T1K, persistent=False)
            self.register_buffer("rope_sin_T1K", sin_T1K, persistent=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, init_std) for matrices (GPT-2, nanoGPT), residual output projections
        (`out_proj`) scaled by 1/sqrt(2*num_layers), zero biases, unit norm gains."""
        cfg = self.config
        residual_std = residual_init_std(cfg.init_std, cfg.num_layers)
        for name, param in self.named_parameters():
            if param.dim() >= 2:
                nn.init.normal_(param, 0.0, residual_std if name.endswith("out_proj.weight") else cfg.init_std)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
            else:
                nn.init.ones_(param)
        self.init_rope()

    def new_kv_cache(self, batch_size: int, max_len: int, device: Optional[torch.device] = None,
                     dtype: Optional[torch.dtype] = None) -> KVCache:
        """An empty cache for up to `max_len` positions. Defaults: the model's device, and the
        autocast dtype when autocast is on there (keys/values are computed in it), else the
        model's dtype."""
        weight = self.tok_embeddings.weight
        device = torch.device(device) if device is not None else weight.device
        if dtype is None:
            autocast = torch.is_autocast_enabled(device.type)
            dtype = torch.get_autocast_dtype(device.type) if autocast else weight.dtype
        return KVCache(self.config.num_layers, batch_size, self.config.num_kv_heads, max_len, self.head_dim,
                       device=device, dtype=dtype)

    def hidden_states(self, input_ids_BT: torch.Tensor, kv_cache: Optional[KVCache] = None) -> torch.Tensor:
        """The final-normed hidden states h_BTD (what the output head reads; heads for other
        tasks, e.g. a reward model, can read them too)."""
        start_pos = kv_cache.length if kv_cache is not None else 0
        end_pos = start_pos + input_ids_BT.shape[1]
        limit = kv_cache.max_len if kv_cache is not None else self.config.max_seq_len
        if end_pos > min(limit, self.config.max_seq_len):
            raise ValueError(f"positions up to {end_pos} requested but the model supports "
                             f"{self.config.max_seq_len} and the cache holds {limit}")
        x_BTD = self.tok_embeddings(input_ids_BT)
        if self.pos_embeddings is not None:
            x_BTD = x_BTD + self.pos_embeddings.weight[start_pos:end_pos]
        x_BTD = self.embed_dropout(x_BTD)
        rope = (self.rope_cos_T1K[start_pos:end_pos], self.rope_sin_T1K[start_pos:end_pos]) if self.use_rope else None
        for index, layer in enumerate(self.layers):
            cache_kv = kv_cache.layer(index) if kv_cache is not None else None
            x_BTD = layer(x_BTD, rope, cache_kv, start_pos)
        if kv_cache is not None:
            kv_cache.length = end_pos
        return self.norm(x_BTD)

    def forward(self, input_ids_BT: torch.Tensor, kv_cache: Optional[KVCache] = None, *,
                targets_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        """logits_BTV; with `targets_BT`, the mean next-token loss instead, computed with the head
        in row chunks (`linear_cross_entropy`: at most 2^26 logits held at a time). The loss
        goes through `forward` so that wrappers (DDP, torch.compile) see it."""
        h_BTD = self.hidden_states(input_ids_BT, kv_cache)
        if targets_BT is not None:
            return linear_cross_entropy(h_BTD.flatten(0, 1), self.output.weight, targets_BT.flatten())
        return self.output(h_BTD)
