"""Language models (decoder-only families and the BERT encoder): shared blocks, family files, named presets.

`build_model(cfg)` resolves the config against its preset and builds the `Transformer` (or, for
family bert, `BertForMaskedLM`); `model.config` is the resolved config.
"""

from lmforge.config import ModelConfig
from lmforge.models.bert import (BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
                                 BertModel)
from lmforge.models.blocks import BlockSpec
from lmforge.models.presets import FAMILIES, PRESETS, resolve_model_config
from lmforge.models.sizing import count_parameters, describe_presets, flops_per_token
from lmforge.models.transformer import KVCache, Transformer


def build_model(cfg: ModelConfig) -> Transformer | BertForMaskedLM:
    """The model for `cfg` (preset applied, derived fields filled), initialised on the current
    default device; use `with torch.device("meta"):` to build without memory. Family bert
    builds its pretraining model, `BertForMaskedLM`."""
    cfg = resolve_model_config(cfg)
    if cfg.family == "bert":
        return BertForMaskedLM(cfg)
    return Transformer(cfg)


__all__ = ["BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification", "BertModel",
           "BlockSpec", "FAMILIES", "KVCache", "PRESETS", "Transformer", "build_model", "count_parameters",
           "describe_presets", "flops_per_token", "resolve_model_config"]
