"""What the decoder-only families (gpt2, llama, mistral, falcon) share: the causal-LM head
over the shared `Transformer`, their config check and the SwiGLU width rule."""

from __future__ import annotations

from typing import Callable

from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.blocks import BlockSpec
from lmforge.models.transformer import Transformer

CAUSAL_HEADS = ("causal_lm",)


def transformer_builder(blocks: BlockSpec) -> Callable[[ModelConfig, str], nn.Module]:
    """``build(cfg, head)`` for a decoder made of ``blocks``: its one head is the causal LM."""

    def build(cfg: ModelConfig, head: str) -> nn.Module:
        return Transformer(cfg, blocks)

    return build


def check_one_stack(cfg: ModelConfig) -> None:
    """The encoder-decoder fields stay unset on a model with one stack (decoder or encoder)."""
    if cfg.head_dim or cfg.num_decoder_layers:
        raise ConfigError("model.head_dim and model.num_decoder_layers are t5 fields: leave them at 0 "
                          f"for family {cfg.family}")


def swiglu_hidden_dim(cfg: ModelConfig) -> int:
    """2/3 of a 4*dim GELU MLP's width (the same parameter count, Shazeer 2020), rounded up to a
    multiple of ``multiple_of`` as in the Llama reference code."""
    hidden = int(8 * cfg.dim / 3)
    return cfg.multiple_of * -(-hidden // cfg.multiple_of)
