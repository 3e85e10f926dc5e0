"""Language models (decoder-only families, the BERT encoder and the T5 encoder-decoder): shared blocks,
registered families (``lmforge.models.families``), named presets.

`build_model(cfg, head)` resolves the config once and builds it with its family's builder;
`model.config` is the resolved config.
"""

from typing import Any, Optional

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.bert import (BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
                                 BertModel)
from lmforge.models.blocks import BlockSpec
from lmforge.models.presets import resolve_model_config
from lmforge.models.registry import Family, all_presets, families, get_family, register_family
from lmforge.models.sizing import count_parameters, describe_presets, flops_per_token
from lmforge.models.t5 import T5Cache, T5Model
from lmforge.models.transformer import KVCache, Transformer


def build_model(cfg: ModelConfig, head: Optional[str] = None) -> nn.Module:
    """The model for `cfg` (preset applied, derived fields filled) with head `head` (None = the
    family's pretraining head: the causal LM of a decoder, BERT's masked LM, T5's seq2seq LM),
    initialised on the current default device; use `with torch.device("meta"):` to build
    without memory."""
    cfg = resolve_model_config(cfg)
    family = get_family(cfg.family)
    return family.build(cfg, family.heads[0] if head is None else family.check_head(head))


def weights_fit(model: nn.Module, names: set[str]) -> bool:
    """Whether weights saved under ``names`` are exactly ``model``'s parameters and buffers
    (tied tensors, saved once under one of their names, may appear under any of them)."""
    state = model.state_dict(keep_vars=True)
    aliases: dict[int, set[str]] = {}
    for name, tensor in state.items():
        aliases.setdefault(id(tensor), set()).add(name)
    return names <= set(state) and all(group & names for group in aliases.values())


def head_of_weights(cfg: ModelConfig, names: set[str]) -> str:
    """The head of ``cfg``'s family whose weights are saved under ``names`` (`weights_fit`; each
    head is built on the meta device); ConfigError when none is. For weights saved without the
    name of their head."""
    cfg = resolve_model_config(cfg)
    family = get_family(cfg.family)
    for head in family.heads:
        try:
            with torch.device("meta"):
                if weights_fit(family.build(cfg, head), names):
                    return head
        except ConfigError:  # a head this config cannot have (a classifier without num_labels)
            continue
    raise ConfigError(f"the weights are those of none of the {family.name} heads ({', '.join(family.heads)}) "
                      "for this config")


def __getattr__(name: str) -> Any:
    """``PRESETS``: every registered preset by name (read from the registry when asked for)."""
    if name == "PRESETS":
        return all_presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification", "BertModel",
           "BlockSpec", "Family", "KVCache", "T5Cache", "T5Model", "Transformer", "all_presets", "build_model",
           "count_parameters", "describe_presets", "families", "flops_per_token", "get_family", "head_of_weights", "register_family", "weights_fit",
           "resolve_model_config"]
