"""Language models (decoder-only families, the BERT encoder and the T5 encoder-decoder): shared blocks, family files, named presets.

`build_model(cfg)` resolves the config against its preset and builds the `Transformer` (or, for
family bert, `BertForMaskedLM`; for family t5, `T5Model`); `model.config` is the resolved config.
"""

from lmforge.config import ModelConfig
from lmforge.models.bert import (BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
                                 BertModel)
from lmforge.models.blocks import BlockSpec
from lmforge.models.presets import FAMILIES, PRESETS, resolve_model_config
from lmforge.models.t5 import T5Cache, T5Model
from lmforge.models.sizing import count_parameters, describe_presets, flops_per_token
from lmforge.models.transformer import KVCache, Transformer


def build_model(cfg: ModelConfig) -> Transformer | BertForMaskedLM | T5Model:
    """The model for `cfg` (preset applied, derived fields filled), initialised on the current
    default device; use `with torch.device("meta"):` to build without memory. Family bert
    builds its pretraining model, `BertForMaskedLM`; family t5 the encoder-decoder with its LM
    head, `T5Model`."""
    cfg = resolve_model_config(cfg)
    if cfg.family == "bert":
        return BertForMaskedLM(cfg)
    if cfg.family == "t5":
        return T5Model(cfg)
    return Transformer(cfg)


__all__ = ["BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification", "BertModel",
           "BlockSpec", "FAMILIES", "KVCache", "PRESETS", "T5Cache", "T5Model", "Transformer", "build_model", "count_parameters",
           "describe_presets", "flops_per_token", "resolve_model_config"]
