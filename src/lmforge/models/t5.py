"""T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer", arXiv 1910.10683): a pre-norm encoder-decoder built from the shared blocks.

One token embedding shared by the encoder, the decoder and (v1.0) the output head; no absolute
positions: each stack adds a learned, bucketed relative position bias to its self-attention
scores (bidirectional buckets in the encoder, causal ones in the decoder), computed once per
stack and reused by every layer. RMS norms without bias or mean (eps 1e-6), no biases in
linears, attention without the 1/sqrt(d) factor (T5's init folds it into the queries),
cross-attention from every decoder block to the encoder output, and a final norm per stack.

Two variants, chosen by config (as HF `T5ForConditionalGeneration` does):

- v1.0 (`feed_forward="relu"`, `tie_embeddings=True`): ReLU MLP; the output head is the token
  embedding and the decoder output is multiplied by dim**-0.5 before it.
- v1.1 (T5 v1.1 release notes: `feed_forward="gated-gelu"`, `tie_embeddings=False`): GEGLU MLP
  (tanh GELU), an untied head and no rescaling; t5-v1_1-small also sets `head_dim` (64 with
  6 heads of a 512 stream).

The constructor takes a resolved config (`lmforge.models.build_model` resolves it). The head
is an `LMHead` that owns the loss and the v1.0 rescale (its `logit_scale`).

Shape legend: B batch, T encoder positions, U decoder positions, S cached decoder positions,
D width (dim), V vocabulary, L layers, H heads, K head width.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.blocks import BlockSpec, EncoderDecoderBlock, RelativePositionBias, make_dropout, make_norm
from lmforge.models.heads import LMHead

BLOCKS = BlockSpec(norm="rmsnorm", mlp="relu", positions="relative", norm_bias=False)


class T5Cache:
    """What decoding one token at a time needs: the decoder self-attention keys/values of
    positions [0, length) (preallocated to `max_len`), the cross-attention keys/values of
    every decoder layer (computed once from the encoder output) and the encoder padding mask."""

    def __init__(self, cross_kv: list[tuple[torch.Tensor, torch.Tensor]], num_layers: int, batch_size: int,
                 num_heads: int, max_len: int, head_dim: int, encoder_mask_BT: Optional[torch.Tensor],
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None):
        shape = (batch_size, num_heads, max_len, head_dim)
        # one (k_BHSK, v_BHSK) pair per layer: handed out as they are, no indexing per step
        self.layers = [(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                       for _ in range(num_layers)]
        self.cross_kv = cross_kv
        self.encoder_mask_BT = encoder_mask_BT
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.layers[0][0].shape[2]

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layers[index]


class T5Model(nn.Module):
    """The T5 encoder-decoder with its LM head (HF's `T5ForConditionalGeneration`).

    `forward(input_ids_BT, decoder_input_ids_BU, attention_mask_BT=None, *, targets_BU=None,
    inputs_embeds_BTD=None) -> logits_BUV` (with `targets_BU`, the head's mean loss);
    `encode(input_ids_BT, attention_mask_BT=None, *, inputs_embeds_BTD=None) -> h_BTD`;
    `decode(decoder_input_ids_BU, encoder_out_BTD=None, attention_mask_BT=None, cache=None) -> logits_BUV`
    (with a cache from `new_cache`, the encoder output and mask come from the cache and
    `decoder_input_ids_BU` are the tokens after the `cache.length` already decoded ones).
    `attention_mask_BT`: 1 = real input token, 0 = padding (hidden from encoder self-attention
    and from cross-attention). Teacher forcing: `decoder_input_ids_BU = shift_right(labels)`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        spec = dataclasses.replace(BLOCKS, mlp="geglu" if cfg.feed_forward == "gated-gelu" else "relu")
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.embed_dropout = make_dropout(cfg.dropout)

        def stack(num_layers: int, is_decoder: bool) -> nn.ModuleList:
            return nn.ModuleList(
                EncoderDecoderBlock(spec, cfg.dim, cfg.num_heads, self.head_dim, cfg.hidden_dim, cfg.norm_eps,
                                    cfg.dropout, is_decoder) for _ in range(num_layers))

        buckets, distance = cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
        self.encoder_pos_bias = RelativePositionBias(cfg.num_heads, buckets, distance, bidirectional=True)
        self.encoder_layers = stack(cfg.num_layers, is_decoder=False)
        self.encoder_norm = make_norm(spec.norm, cfg.dim, cfg.norm_eps, False)
        self.decoder_pos_bias = RelativePositionBias(cfg.num_heads, buckets, distance, bidirectional=False)
        self.decoder_layers = stack(self.num_decoder_layers, is_decoder=True)
        self.decoder_norm = make_norm(spec.norm, cfg.dim, cfg.norm_eps, False)
        # v1.0 (tied) rescales the decoder output by dim**-0.5 before the head (Mesh TF T5)
        self.output = LMHead(cfg.dim, cfg.vocab_size, logit_scale=cfg.dim ** -0.5 if cfg.tie_embeddings else 1.0)
        if cfg.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.init_weights()

    @property
    def head_dim(self) -> int:
        return self.config.head_dim or self.config.dim // self.config.num_heads

    @property
    def num_decoder_layers(self) -> int:
        return self.config.num_decoder_layers or self.config.num_layers

    @torch.no_grad()
    def init_weights(self) -> None:
        """T5's (Mesh TensorFlow's) init, as HF T5 applies it: the embedding Normal(0, 1);
        queries Normal(0, (D·K)^-0.5), which folds in the 1/sqrt(K) the attention leaves out;
        keys, values, MLP inputs and position biases Normal(0, D^-0.5); attention outputs
        Normal(0, (H·K)^-0.5); MLP outputs Normal(0, F^-0.5); norms 1. An untied (v1.1) head
        gets the fan-in Normal(0, D^-0.5), so its logits start O(1) as the tied head's do
        after the dim**-0.5 rescale (HF draws it from Normal(0, 1), which starts a
        from-scratch run at a loss of ~sqrt(D) nats). `init_std` is not used."""
        cfg = self.config
        D, HK, F = cfg.dim, cfg.num_heads * self.head_dim, cfg.hidden_dim
        for name, param in self.named_parameters():
            leaf = name.rsplit(".", 2)[-2] if "." in name else name
            if param.dim() < 2:
                nn.init.ones_(param)
                continue
            if name == "tok_embeddings.weight":
                std = 1.0
            elif leaf == "q_proj":
                std = (D * self.head_dim) ** -0.5
            elif leaf == "out_proj" and ".mlp." in name:
                std = F ** -0.5
            elif leaf == "out_proj":
                std = HK ** -0.5
            else:  # k/v projections, MLP in/gate/up projections, relative position biases
                std = D ** -0.5
            nn.init.normal_(param, 0.0, std)

    def encode(self, input_ids_BT: Optional[torch.Tensor] = None, attention_mask_BT: Optional[torch.Tensor] = None,
               *, inputs_embeds_BTD: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The encoder output h_BTD (after the encoder's final norm); `inputs_embeds_BTD`
        replaces the token embedding of `input_ids_BT` (one of the two)."""
        if (input_ids_BT is None) == (inputs_embeds_BTD is None):
            raise ValueError("pass exactly one of input_ids_BT and inputs_embeds_BTD")
        x_BTD = self.tok_embeddings(input_ids_BT) if inputs_embeds_BTD is None else inputs_embeds_BTD
        T = x_BTD.shape[1]
        x_BTD = self.embed_dropout(x_BTD)
        bias_1HTT = self.encoder_pos_bias(T, T)
        for layer in self.encoder_layers:
            x_BTD = layer(x_BTD, bias_1HTT, key_padding_mask_BS=attention_mask_BT)
        return self.embed_dropout(self.encoder_norm(x_BTD))

    def cross_kv(self, encoder_out_BTD: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every decoder layer's cross-attention keys/values of the encoder output."""
        return [layer.cross_attn.project_kv(encoder_out_BTD) for layer in self.decoder_layers]

    def new_cache(self, encoder_out_BTD: torch.Tensor, max_len: int = 0,
                  attention_mask_BT: Optional[torch.Tensor] = None, dtype: Optional[torch.dtype] = None) -> T5Cache:
        """A decoding cache for up to `max_len` decoder positions (0 = max_seq_len), with the
        cross-attention keys/values computed here, once. dtype defaults to the encoder output's."""
        cross_kv = self.cross_kv(encoder_out_BTD)
        return T5Cache(cross_kv, self.num_decoder_layers, encoder_out_BTD.shape[0], self.config.num_heads,
                       max_len or self.config.max_seq_len, self.head_dim, attention_mask_BT,
                       device=encoder_out_BTD.device, dtype=dtype or cross_kv[0][0].dtype)

    def decoder_hidden_states(self, decoder_input_ids_BU: torch.Tensor,
                              encoder_out_BTD: Optional[torch.Tensor] = None,
                              attention_mask_BT: Optional[torch.Tensor] = None,
                              cache: Optional[T5Cache] = None) -> torch.Tensor:
        """The decoder's final-normed h_BUD (before the v1.0 rescaling and the head)."""
        U = decoder_input_ids_BU.shape[1]
        start_pos = cache.length if cache is not None else 0
        end_pos = start_pos + U
        if cache is not None:
            if end_pos > cache.max_len:
                raise ValueError(f"decoder positions up to {end_pos} requested but the cache holds {cache.max_len}")
            cross_kv, attention_mask_BT = cache.cross_kv, cache.encoder_mask_BT
        elif encoder_out_BTD is None:
            raise ValueError("decode needs the encoder output or a cache from new_cache")
        else:
            cross_kv = self.cross_kv(encoder_out_BTD)
        x_BUD = self.embed_dropout(self.tok_embeddings(decoder_input_ids_BU))
        bias_1HUS = self.decoder_pos_bias(U, end_pos, start_pos)
        for index, layer in enumerate(self.decoder_layers):
            cache_kv = cache.layer(index) if cache is not None else None
            x_BUD = layer(x_BUD, bias_1HUS, cache_kv=cache_kv, start_pos=start_pos, memory_kv=cross_kv[index],
                          memory_padding_mask_BS=attention_mask_BT)
        if cache is not None:
            cache.length = end_pos
        return self.embed_dropout(self.decoder_norm(x_BUD))

    def decode(self, decoder_input_ids_BU: torch.Tensor, encoder_out_BTD: Optional[torch.Tensor] = None,
               attention_mask_BT: Optional[torch.Tensor] = None, cache: Optional[T5Cache] = None,
               targets_BU: Optional[torch.Tensor] = None) -> torch.Tensor:
        h_BUD = self.decoder_hidden_states(decoder_input_ids_BU, encoder_out_BTD, attention_mask_BT, cache)
        return self.output(h_BUD, targets_BU)

    def forward(self, input_ids_BT: Optional[torch.Tensor] = None, decoder_input_ids_BU: Optional[torch.Tensor] = None,
                attention_mask_BT: Optional[torch.Tensor] = None, *, targets_BU: Optional[torch.Tensor] = None,
                inputs_embeds_BTD: Optional[torch.Tensor] = None) -> torch.Tensor:
        encoder_out_BTD = self.encode(input_ids_BT, attention_mask_BT, inputs_embeds_BTD=inputs_embeds_BTD)
        return self.decode(decoder_input_ids_BU, encoder_out_BTD, attention_mask_BT, targets_BU=targets_BU)
