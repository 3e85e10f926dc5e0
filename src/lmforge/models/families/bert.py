"""BERT (Devlin et al. 2019): the bidirectional post-norm encoder, trained by masked LM, with
sequence and token classification heads (the model code is `lmforge.models.bert`)."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.interop.hf import HFMapping, given_tokens, import_transformers, our_shapes
from lmforge.models import bert
from lmforge.models.presets import resolve_model_config
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


# --------------------------------------------------------------------------- Hugging Face
# HF BERT keeps q, k and v separate nn.Linear layers, so the mapping is a pure rename (no fusing,
# no transposes). Our head classes carry HF's class names.

_LAYER_NAMES = (("attn.q_proj", "attention.self.query"), ("attn.k_proj", "attention.self.key"),
                ("attn.v_proj", "attention.self.value"), ("attn.out_proj", "attention.output.dense"),
                ("attn_norm", "attention.output.LayerNorm"), ("mlp.in_proj", "intermediate.dense"),
                ("mlp.out_proj", "output.dense"), ("mlp_norm", "output.LayerNorm"))
_NAMES = (("tok_embeddings", "bert.embeddings.word_embeddings"),
          ("pos_embeddings", "bert.embeddings.position_embeddings"),
          ("type_embeddings", "bert.embeddings.token_type_embeddings"),
          ("embed_norm", "bert.embeddings.LayerNorm"), ("pooler", "bert.pooler.dense"),
          ("head_dense", "cls.predictions.transform.dense"),
          ("head_norm", "cls.predictions.transform.LayerNorm"),
          ("output.weight", "cls.predictions.decoder.weight"), ("output.bias", "cls.predictions.bias"),
          ("classifier", "classifier"))
# HF BertForMaskedLM lists its output bias twice (the decoder's bias is the same tensor).
_HF_ALIASES = {"cls.predictions.decoder.bias": "cls.predictions.bias"}
# HF BERT tensors an MLM import may find and leaves out: the pooler and next-sentence head of
# BertForPreTraining checkpoints (Devlin et al. 2019, sec. 3.1, task 2; RoBERTa dropped it).
PRETRAINING_EXTRAS = ("bert.pooler.", "cls.seq_relationship.")


def _hf_key(key: str) -> str:
    """HF's name of one of our BERT state-dict keys."""
    if key.startswith("layers."):
        _, index, rest = key.split(".", 2)
        for ours, hf in _LAYER_NAMES:
            if rest.startswith(ours + "."):
                return f"bert.encoder.layer.{index}.{hf}{rest[len(ours):]}"
    for ours, hf in _NAMES:
        if key == ours or key.startswith(ours + "."):
            return hf + key[len(ours):]
    raise KeyError(f"no HF name for BERT key '{key}'")


def to_hf_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {_hf_key(key): tensor for key, tensor in state_dict.items()}
    for alias, key in _HF_ALIASES.items():
        if key in out:
            out[alias] = out[key]
    return out


def from_hf_state_dict(hf_state_dict: dict[str, torch.Tensor], cfg: ModelConfig, head: str) -> dict[str, torch.Tensor]:
    """HF BERT weights -> ours for ``head``. HF tensors our model lacks (the pooler and
    next-sentence head of a pretraining checkpoint, buffers) are left out; a missing one raises."""
    out: dict[str, torch.Tensor] = {}
    for key in our_shapes(cfg, head):
        hf_key = _hf_key(key)
        if hf_key in hf_state_dict:
            out[key] = hf_state_dict[hf_key]
        elif key == "output.weight" and cfg.tie_embeddings:
            out[key] = hf_state_dict["bert.embeddings.word_embeddings.weight"]
        else:
            raise ConfigError(f"HF state dict has no '{hf_key}': the HF model does not match the bert config "
                              f"({HEAD_CLASSES[head].__name__}: layers, token types, head)")
    return out


def config_to_hf(cfg: ModelConfig, tokens: dict[str, Optional[int]]) -> Any:
    if not cfg.bias or cfg.type_vocab_size <= 0:
        raise ConfigError("HF BERT has biases and token-type embeddings: set model.bias true and "
                          "model.type_vocab_size >= 1")
    return import_transformers().BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.hidden_dim, hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_seq_len, type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.init_std, layer_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
        **given_tokens(tokens))


def config_from_hf(config: Any) -> ModelConfig:
    """Absolute positions, exact GELU, encoder only."""
    if config.hidden_act != "gelu":
        raise ConfigError(f"HF BERT activation '{config.hidden_act}' is not supported (exact GELU only)")
    if getattr(config, "position_embedding_type", "absolute") != "absolute" or getattr(config, "is_decoder", False):
        raise ConfigError("HF BERT with relative positions or as a decoder is not supported")
    return resolve_model_config(ModelConfig(
        family="bert", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
        dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        hidden_dim=config.intermediate_size, norm_eps=config.layer_norm_eps, bias=True,
        tie_embeddings=config.tie_word_embeddings, type_vocab_size=config.type_vocab_size,
        dropout=0.0, init_std=config.initializer_range))


def _extra_prefixes(head: str) -> tuple[str, ...]:
    return PRETRAINING_EXTRAS if head == "masked_lm" else ()


HF = HFMapping(
    model_type="bert", classes={head: cls.__name__ for head, cls in HEAD_CLASSES.items()},
    aliases={"BertForPreTraining": "masked_lm"},  # the original releases: MLM + pooler + next-sentence head
    config_to_hf=config_to_hf, config_from_hf=config_from_hf, to_hf_state_dict=to_hf_state_dict,
    from_hf_state_dict=from_hf_state_dict, extra_prefixes=_extra_prefixes,
    bases={"BertModel": "bert."},  # the encoder with its pooler, no head
    # the pooler is a head's: BertForMaskedLM has none, the classifiers need one
    head_prefixes=("pooler.", "head_dense.", "head_norm.", "output.", "classifier."))

FAMILY = register_family(Family(
    name="bert", summary="bidirectional post-norm encoder with learned positions and token types", blocks=bert.BLOCKS, heads=tuple(HEAD_CLASSES), build=build, default_task="masked_lm",
    presets=PRESETS, generation=None, validate=validate, approx_parameters=approx_parameters, hf=HF))
