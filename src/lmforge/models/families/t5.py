"""T5 (Raffel et al. 2020): the pre-norm encoder-decoder with relative position bias and RMS
norms, trained by span corruption (the model code is `lmforge.models.t5`)."""

from __future__ import annotations

from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models import t5
from lmforge.models.registry import Family, block_weights, embedding_parameters, register_family

_T5 = {"family": "t5", "bias": False, "norm_eps": 1e-6, "tie_embeddings": True, "feed_forward": "relu"}
_T5_V1_1 = {**_T5, "tie_embeddings": False, "feed_forward": "gated-gelu"}
# max_seq_len is the training length (the relative bias has no hard limit) and the longest
# decoder cache by default. Parameter counts as HF T5ForConditionalGeneration counts them.
PRESETS = {
    "t5-tiny": {**_T5, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    # CPU-sized; vocab_size comes from the tokenizer.
    "t5-quickstart": {**_T5, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 4},
    # v1.0: ReLU, tied and rescaled output; 60,506,624 parameters.
    "t5-small": {**_T5, "vocab_size": 32128, "max_seq_len": 512, "dim": 512, "num_layers": 6, "num_heads": 8,
                 "hidden_dim": 2048},
    # v1.1: gated GELU, untied head, 6 heads of width 64; 76,961,152 parameters.
    "t5-v1_1-small": {**_T5_V1_1, "vocab_size": 32128, "max_seq_len": 512, "dim": 512, "num_layers": 8,
                      "num_heads": 6, "head_dim": 64, "hidden_dim": 1024},
}


def build(cfg: ModelConfig, head: str) -> nn.Module:
    return t5.T5Model(cfg)


def validate(cfg: ModelConfig) -> None:
    if cfg.num_kv_heads != cfg.num_heads or cfg.sliding_window or cfg.bias:
        raise ConfigError("model.family t5 has multi-head full attention and no biases: leave "
                          "model.num_kv_heads and model.sliding_window at 0 and model.bias false")
    if cfg.head_dim < 0 or cfg.num_decoder_layers < 0:
        raise ConfigError("model.head_dim and model.num_decoder_layers must be >= 0 (0 = derived)")
    if not cfg.head_dim and cfg.dim % cfg.num_heads:
        raise ConfigError(f"model.dim ({cfg.dim}) must be divisible by model.num_heads ({cfg.num_heads}), "
                          "or set model.head_dim")
    if cfg.relative_attention_num_buckets < 4 or cfg.relative_attention_max_distance <= cfg.relative_attention_num_buckets // 4:
        raise ConfigError("model.relative_attention_num_buckets must be >= 4 and "
                          "model.relative_attention_max_distance > num_buckets / 4")


def decoder_layers(cfg: ModelConfig) -> int:
    return cfg.num_decoder_layers or cfg.num_layers


def attention_layers(cfg: ModelConfig) -> int:
    """Encoder self-attention, plus decoder self- and cross-attention (two per decoder layer)."""
    return cfg.num_layers + 2 * decoder_layers(cfg)


def approx_parameters(cfg: ModelConfig) -> int:
    """Both stacks (decoder layers with cross-attention), the shared embedding and head, and a
    relative position bias table per stack."""
    attention, mlp = block_weights(cfg, gated=cfg.feed_forward == "gated-gelu")
    width = cfg.num_heads * (cfg.head_dim or cfg.dim // cfg.num_heads)
    cross = 4 * cfg.dim * width
    return (embedding_parameters(cfg, t5.BLOCKS) + cfg.num_layers * (attention + mlp)
            + decoder_layers(cfg) * (attention + cross + mlp) + 2 * cfg.relative_attention_num_buckets * cfg.num_heads)


FAMILY = register_family(Family(
    name="t5", summary="pre-norm encoder-decoder with relative position bias and RMS norms, trained by span "
    "corruption", blocks=t5.BLOCKS, heads=("seq2seq_lm",), build=build, default_task="span_corruption",
    presets=PRESETS, generation="seq2seq", validate=validate, approx_parameters=approx_parameters,
    attention_layers=attention_layers))
