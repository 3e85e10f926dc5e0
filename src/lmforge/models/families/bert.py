"""BERT (Devlin et al. 2019): the bidirectional post-norm encoder, trained by masked LM, with
sequence and token classification heads (the model code is `lmforge.models.bert`)."""

from __future__ import annotations

from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models import bert
from lmforge.models.families._decoder import check_one_stack
from lmforge.models.registry import Family, register_family, stack_parameters

HEAD_CLASSES = {"masked_lm": bert.BertForMaskedLM, "sequence_classification": bert.BertForSequenceClassification,
                "token_classification": bert.BertForTokenClassification}

_BERT = {"family": "bert", "bias": True, "norm_eps": 1e-12, "tie_embeddings": True, "type_vocab_size": 2}
PRESETS = {
    "bert-tiny": {**_BERT, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    # CPU-sized; vocab_size comes from the tokenizer.
    "bert-quickstart": {**_BERT, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 4},
    # BERT-base (110M: 109,482,240 parameters with the pooler, as HF BertModel).
    "bert-base": {**_BERT, "vocab_size": 30522, "max_seq_len": 512, "dim": 768, "num_layers": 12, "num_heads": 12},
}


def build(cfg: ModelConfig, head: str) -> nn.Module:
    return HEAD_CLASSES[head](cfg)


def validate(cfg: ModelConfig) -> None:
    check_one_stack(cfg)
    if cfg.num_kv_heads != cfg.num_heads or cfg.sliding_window:
        raise ConfigError("model.family bert has multi-head full attention: leave model.num_kv_heads "
                          "and model.sliding_window at 0")


def approx_parameters(cfg: ModelConfig) -> int:
    """The encoder stack plus the segment table and the MLM head's dense layer."""
    return stack_parameters(cfg, bert.BLOCKS) + cfg.type_vocab_size * cfg.dim + cfg.dim * cfg.dim


FAMILY = register_family(Family(
    name="bert", summary="bidirectional post-norm encoder with learned positions and token types, trained by "
    "masked LM", blocks=bert.BLOCKS, heads=tuple(HEAD_CLASSES), build=build, default_task="masked_lm",
    presets=PRESETS, generation=None, validate=validate, approx_parameters=approx_parameters))
