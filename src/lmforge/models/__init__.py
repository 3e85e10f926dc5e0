"""Decoder-only language models: shared blocks, family files, named presets.

`build_model(cfg)` resolves the config against its preset and builds the `Transformer`;
`model.config` is the resolved config.
"""

from lmforge.config import ModelConfig
from lmforge.models.blocks import BlockSpec
from lmforge.models.presets import FAMILIES, PRESETS, resolve_model_config
from lmforge.models.sizing import count_parameters, describe_presets, flops_per_token
from lmforge.models.transformer import KVCache, Transformer


def build_model(cfg: ModelConfig) -> Transformer:
    """The model for `cfg` (preset applied, derived fields filled), initialised on the current
    default device; use `with torch.device("meta"):` to build without memory."""
    return Transformer(resolve_model_config(cfg))


__all__ = ["BlockSpec", "FAMILIES", "KVCache", "PRESETS", "Transformer", "build_model", "count_parameters",
           "describe_presets", "flops_per_token", "resolve_model_config"]
