"""The decoder-only Transformer every family shares, and its KV cache.

The constructor takes a resolved config (`lmforge.models.build_model` resolves it) and the
family's blocks; nothing here knows about presets.

Shape legend (suffixes on tensor names):
    L layers, B batch, T positions in this call, S key positions (cached + this call's),
    D model width (dim), G key/value heads, K head width, V vocabulary.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.blocks import (BlockSpec, Rope, TransformerBlock, make_dropout, make_norm, residual_init_std,
                                   rope_tables)
from lmforge.models.heads import LMHead


class KVCache:
    """Keys and values of every layer for positions [0, length), preallocated to `max_len`.

    The model writes the keys/values of the positions it is given at `length` and then advances
    `length`, so a caller only ever passes the new tokens. With sliding-window attention the
    cache still holds every position (keys older than the window are masked, not dropped):
    simple and exact, at the memory cost of the full length.
    """

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_len: int, head_dim: int,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None):
        shape = (batch_size, num_kv_heads, max_len, head_dim)
        # one (k_BGSK, v_BGSK) pair per layer: handed out as they are, no indexing per step
        self.layers = [(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                       for _ in range(num_layers)]
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.layers[0][0].shape[2]

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layers[index]

    def reset(self) -> None:
        self.length = 0


class Transformer(nn.Module):
    """Token embedding (+ learned positions for GPT-2), pre-norm blocks (sequential or parallel
    residual), final norm, output head (`LMHead`, which owns the loss).

    `Transformer(cfg, blocks)`: `cfg` resolved, `blocks` the family's `BlockSpec`.
    `forward(input_ids_BT, kv_cache=None, *, targets_BT=None, ...) -> logits_BTV`, or with
    `targets_BT` the mean next-token loss. With a cache, `input_ids_BT` are the tokens after
    the `kv_cache.length` already cached ones. See `hidden_states` for the other inputs.
    """

    def __init__(self, cfg: ModelConfig, blocks: BlockSpec):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_embeddings = nn.Embedding(cfg.max_seq_len, cfg.dim) if blocks.positions == "learned" else None
        self.embed_dropout = make_dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            TransformerBlock(blocks, cfg.dim, cfg.num_heads, cfg.num_kv_heads, cfg.hidden_dim, cfg.norm_eps,
                             cfg.bias, cfg.dropout, cfg.sliding_window)
            for _ in range(cfg.num_layers))
        norm_bias = cfg.bias if blocks.norm_bias is None else blocks.norm_bias
        self.norm = make_norm(blocks.norm, cfg.dim, cfg.norm_eps, norm_bias)
        self.output = LMHead(cfg.dim, cfg.vocab_size)
        if cfg.tie_embeddings:
            # Press & Wolf 2017: one matrix embeds and un-embeds; GPT-2 and small Llamas do this.
            self.output.weight = self.tok_embeddings.weight
        self.use_rope = blocks.positions == "rope"
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

    def embed(self, input_ids_BT: Optional[torch.Tensor], inputs_embeds_BTD: Optional[torch.Tensor],
              positions: slice | torch.Tensor) -> torch.Tensor:
        """Token embeddings (or the given ones) plus learned positions where the family has them."""
        x_BTD = self.tok_embeddings(input_ids_BT) if inputs_embeds_BTD is None else inputs_embeds_BTD
        if self.pos_embeddings is not None:  # through the module's call, so wrappers see the read
            if isinstance(positions, slice):
                positions = torch.arange(positions.start, positions.stop, device=x_BTD.device)
            x_BTD = x_BTD + self.pos_embeddings(positions)
        return self.embed_dropout(x_BTD)

    def rope(self, positions: slice | torch.Tensor) -> Optional[Rope]:
        """The RoPE rows of these positions: (T, 1, K) for a slice, (B, T, 1, K) for ids."""
        return (self.rope_cos_T1K[positions], self.rope_sin_T1K[positions]) if self.use_rope else None

    def hidden_states(self, input_ids_BT: Optional[torch.Tensor] = None, kv_cache: Optional[KVCache] = None, *,
                      inputs_embeds_BTD: Optional[torch.Tensor] = None,
                      attention_mask_BT: Optional[torch.Tensor] = None,
                      position_ids_BT: Optional[torch.Tensor] = None,
                      document_ids_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The final-normed hidden states h_BTD (what the output head reads; heads for other
        tasks, e.g. a reward model, can read them too).

        `inputs_embeds_BTD` replaces the token embedding of `input_ids_BT` (one of the two).
        `position_ids_BT` (default: the positions after the cache, from 0 without one) are
        what RoPE and learned positions read; packed documents restart them at 0.
        `attention_mask_BT` (1 = real token, 0 = padding) and `document_ids_BT` (a query
        attends only to keys of its own document, causally within it) have one column per key
        position: with a cache, the cached positions and then this call's.
        """
        if (input_ids_BT is None) == (inputs_embeds_BTD is None):
            raise ValueError("pass exactly one of input_ids_BT and inputs_embeds_BTD")
        start_pos = kv_cache.length if kv_cache is not None else 0
        T = (input_ids_BT if input_ids_BT is not None else inputs_embeds_BTD).shape[1]
        end_pos = start_pos + T
        limit = kv_cache.max_len if kv_cache is not None else self.config.max_seq_len
        if end_pos > min(limit, self.config.max_seq_len):
            raise ValueError(f"positions up to {end_pos} requested but the model supports "
                             f"{self.config.max_seq_len} and the cache holds {limit}")
        positions = slice(start_pos, end_pos) if position_ids_BT is None else position_ids_BT
        x_BTD, rope = self.embed(input_ids_BT, inputs_embeds_BTD, positions), self.rope(positions)
        for index, layer in enumerate(self.layers):
            cache_kv = kv_cache.layer(index) if kv_cache is not None else None
            x_BTD = layer(x_BTD, rope, cache_kv, start_pos, attention_mask_BT, document_ids_BT)
        if kv_cache is not None:
            kv_cache.length = end_pos
        return self.norm(x_BTD)

    def forward(self, input_ids_BT: Optional[torch.Tensor] = None, kv_cache: Optional[KVCache] = None, *,
                targets_BT: Optional[torch.Tensor] = None, inputs_embeds_BTD: Optional[torch.Tensor] = None,
                attention_mask_BT: Optional[torch.Tensor] = None, position_ids_BT: Optional[torch.Tensor] = None,
                document_ids_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        """logits_BTV; with `targets_BT`, the mean next-token loss instead, computed by the head
        module (`LMHead`: in row chunks, at most 2^26 logits held at a time). The loss goes
        through `forward` so that wrappers (DDP, torch.compile) see it."""
        h_BTD = self.hidden_states(input_ids_BT, kv_cache, inputs_embeds_BTD=inputs_embeds_BTD,
                                   attention_mask_BT=attention_mask_BT, position_ids_BT=position_ids_BT,
                                   document_ids_BT=document_ids_BT)
        return self.output(h_BTD, targets_BT)
