"""T5 (Raffel et al. 2020): the pre-norm encoder-decoder with relative position bias and RMS
norms, trained by span corruption (the model code is `lmforge.models.t5`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError, TokenizerError
from lmforge.interop.hf import HFMapping, import_transformers
from lmforge.models import t5
from lmforge.models.presets import resolve_model_config
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


# --------------------------------------------------------------------------- Hugging Face
# T5 as HF `T5ForConditionalGeneration` lays it out: `shared` embedding (aliased as
# encoder/decoder `embed_tokens`), `block.{i}.layer.{j}` sub-layers (0 self-attention, 1
# cross-attention in the decoder, then the feed-forward), separate q/k/v/o Linears without
# biases: a pure rename. HF keeps the relative position table in block 0's self-attention; we
# keep it on the stack (`encoder_pos_bias`, `decoder_pos_bias`), the same single table.
#
# Tied vs untied: v1.0 ties the head and rescales the decoder output by dim**-0.5; v1.1
# (released with untied heads) does neither. transformers 5 always ties the head when it
# builds a model from a config and keys the rescaling on `scale_decoder_outputs` (the
# `tie_word_embeddings` value the config was given); v1.1 checkpoints get their own head at
# load time. `_untie_head` unties it for an untied model.


def _rules(cfg: ModelConfig) -> list[tuple[str, str]]:
    """(our key, HF key) for every T5 tensor except the head and the embedding aliases."""
    gated = cfg.feed_forward == "gated-gelu"
    mlp = ((("gate_proj", "wi_0"), ("up_proj", "wi_1"), ("out_proj", "wo")) if gated
           else (("in_proj", "wi"), ("out_proj", "wo")))
    attn = (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o"))
    rules = [("tok_embeddings.weight", "shared.weight")]
    for stack, num_layers in (("encoder", cfg.num_layers), ("decoder", decoder_layers(cfg))):
        rules.append((f"{stack}_pos_bias.relative_attention_bias.weight",
                      f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"))
        for i in range(num_layers):
            ours, hf = f"{stack}_layers.{i}", f"{stack}.block.{i}.layer"
            rules += [(f"{ours}.attn.{o}.weight", f"{hf}.0.SelfAttention.{h}.weight") for o, h in attn]
            rules.append((f"{ours}.attn_norm.weight", f"{hf}.0.layer_norm.weight"))
            ff = 1
            if stack == "decoder":
                rules += [(f"{ours}.cross_attn.{o}.weight", f"{hf}.1.EncDecAttention.{h}.weight") for o, h in attn]
                rules.append((f"{ours}.cross_norm.weight", f"{hf}.1.layer_norm.weight"))
                ff = 2
            rules += [(f"{ours}.mlp.{o}.weight", f"{hf}.{ff}.DenseReluDense.{h}.weight") for o, h in mlp]
            rules.append((f"{ours}.mlp_norm.weight", f"{hf}.{ff}.layer_norm.weight"))
        rules.append((f"{stack}_norm.weight", f"{stack}.final_layer_norm.weight"))
    return rules


def to_hf_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {hf: state_dict[ours] for ours, hf in _rules(cfg)}
    out["encoder.embed_tokens.weight"] = out["decoder.embed_tokens.weight"] = out["shared.weight"]
    out["lm_head.weight"] = state_dict.get("output.weight", out["shared.weight"])
    return out


def from_hf_state_dict(hf_state_dict: dict[str, torch.Tensor], cfg: ModelConfig, head: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for ours, hf in _rules(cfg):
        if hf not in hf_state_dict:
            raise ConfigError(f"HF state dict has no '{hf}': the HF model does not match the t5 config "
                              "(layers, feed_forward)")
        out[ours] = hf_state_dict[hf]
    if cfg.tie_embeddings:
        out["output.weight"] = out["tok_embeddings.weight"]
    else:  # a head saved without its own tensor is the (tied) embedding
        out["output.weight"] = hf_state_dict.get("lm_head.weight", out["tok_embeddings.weight"])
    return out


def config_to_hf(cfg: ModelConfig, tokens: dict[str, Optional[int]]) -> Any:
    """HF T5Config; pad doubles as the decoder start (as span corruption trains it: labels
    shifted right behind pad); pad 0 and eos 1 unless given, as in T5."""
    ids = {"pad_token_id": 0, "eos_token_id": 1}
    ids.update({k: v for k, v in tokens.items() if v is not None and k != "bos_token_id"})
    return import_transformers().T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.dim, d_kv=cfg.head_dim or cfg.dim // cfg.num_heads,
        d_ff=cfg.hidden_dim, num_layers=cfg.num_layers, num_decoder_layers=decoder_layers(cfg),
        num_heads=cfg.num_heads, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance, dropout_rate=cfg.dropout,
        layer_norm_epsilon=cfg.norm_eps, feed_forward_proj=cfg.feed_forward,
        tie_word_embeddings=cfg.tie_embeddings, decoder_start_token_id=ids["pad_token_id"], **ids)


# The feed-forward variants we build, with the activation and gating HF must then have:
# feed_forward_proj -> (is_gated_act, accepted dense_act_fn). gelu_new and gelu_pytorch_tanh are
# both the tanh GELU (T5 v1.1); a config.json may carry is_gated_act/dense_act_fn keys that
# override what feed_forward_proj implies, and HF's model follows those keys, so all three are checked.
_FEED_FORWARD = {"relu": (False, ("relu",)), "gated-gelu": (True, ("gelu_new", "gelu_pytorch_tanh"))}


def _check_supported(config: Any) -> None:
    """ConfigError (one line, naming the option) for an HF T5 config we would compute differently."""
    ff = config.feed_forward_proj
    if ff not in _FEED_FORWARD:
        raise ConfigError(f"HF T5 feed_forward_proj '{ff}' is not supported: relu (T5 v1.0) or gated-gelu (T5 v1.1)")
    gated, activations = _FEED_FORWARD[ff]
    if bool(getattr(config, "is_gated_act", gated)) != gated:
        raise ConfigError(f"HF T5 is_gated_act={config.is_gated_act} with feed_forward_proj '{ff}' is not "
                          f"supported: set is_gated_act {str(gated).lower()} or drop it from config.json")
    if getattr(config, "dense_act_fn", activations[0]) not in activations:
        raise ConfigError(f"HF T5 dense_act_fn '{config.dense_act_fn}' with feed_forward_proj '{ff}' is not "
                          f"supported: use {activations[0]}")
    encoder_only = list(getattr(config, "architectures", None) or []) == ["T5EncoderModel"]
    if (not getattr(config, "is_encoder_decoder", True) and not encoder_only) or getattr(config, "is_decoder", False):
        raise ConfigError("HF T5 used as an encoder-only or decoder-only model is not supported: "
                          "only T5ForConditionalGeneration (is_encoder_decoder true) or T5EncoderModel")
    if config.relative_attention_num_buckets < 4 or \
            config.relative_attention_max_distance <= config.relative_attention_num_buckets // 4:
        raise ConfigError(f"HF T5 relative attention with {config.relative_attention_num_buckets} buckets and "
                          f"max distance {config.relative_attention_max_distance} is not supported: "
                          "need >= 4 buckets and max distance > buckets / 4")


def config_from_hf(config: Any) -> ModelConfig:
    """v1.0 (relu, tied and rescaled) or v1.1 (gated-gelu, untied, not rescaled); other
    activations, a gating or activation that contradicts feed_forward_proj, and non-seq2seq use
    raise. Our `tie_embeddings` follows the rescaling: an HF model that rescales without tying
    (or the reverse, as transformers 5 builds a v1.1 model from a config) loads as the untied
    variant with its head's weights, which computes the same function. max_seq_len is T5's
    training length, 512 (the relative bias itself has no limit)."""
    _check_supported(config)
    # transformers >= 5 records the rescaling as `scale_decoder_outputs`; earlier, tied <=> rescaled
    tied = bool(getattr(config, "scale_decoder_outputs", config.tie_word_embeddings))
    num_heads = config.num_heads
    head_dim = config.d_kv if config.d_kv * num_heads != config.d_model else 0
    return resolve_model_config(ModelConfig(
        family="t5", vocab_size=config.vocab_size, max_seq_len=512, dim=config.d_model,
        num_layers=config.num_layers,
        num_decoder_layers=(config.num_decoder_layers if config.num_decoder_layers != config.num_layers else 0),
        num_heads=num_heads, head_dim=head_dim, hidden_dim=config.d_ff, norm_eps=config.layer_norm_epsilon,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        feed_forward=config.feed_forward_proj, tie_embeddings=tied, bias=False, dropout=0.0))


def _untie_head(hf_model: Any, cfg: ModelConfig) -> None:
    if not cfg.tie_embeddings and hf_model.lm_head.weight is hf_model.shared.weight:
        hf_model.lm_head.weight = torch.nn.Parameter(hf_model.shared.weight.detach().clone())


def _untied_config_json(config: dict[str, Any], cfg: ModelConfig) -> None:
    """Say ``tie_word_embeddings: false`` in a T5 v1.1 (untied) export's config.json, as the
    google/t5-v1_1-* files do. transformers 5 keeps every T5 config tied in memory (and writes
    that) but reads false back as "do not rescale"; transformers 4 would read true as "tie the
    head to the embedding", which is wrong for v1.1."""
    if not cfg.tie_embeddings:
        config["tie_word_embeddings"] = False


# Span corruption uses the top NUM_SENTINELS ids of the model's vocabulary as sentinels
# (``<extra_id_0>`` = vocab_size - 1, T5's convention), ids our tokenizer does not have. The
# export adds them to tokenizer.json as special tokens at exactly those ids (so
# ``tokenizer.decode`` shows them) and the import takes them out again.
NUM_SENTINELS = 100  # as the span_corruption task (checked by a test)


def sentinel_token(index: int) -> str:
    """T5's name of sentinel ``index`` (Raffel et al. 2020, sec. 3.1.4; HF's ``<extra_id_N>``)."""
    return f"<extra_id_{index}>"


def _export_tokenizer(tokenizer_json: dict[str, Any], tokenizer_vocab_size: int, cfg: ModelConfig,
                      ckpt_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tokenizer_json`` with the sentinels: ``<extra_id_i>`` at id vocab_size - 1 - i, in the
    model's vocabulary (so the id is kept when the file loads; an added token alone would be
    renumbered to the next free id) and among the added special tokens; and the
    tokenizer_config.json entries that name them."""
    first = cfg.vocab_size - NUM_SENTINELS
    if first < tokenizer_vocab_size:
        raise ConfigError(f"checkpoint '{ckpt_dir}': a t5 model needs {NUM_SENTINELS} sentinel ids above the "
                          f"tokenizer's {tokenizer_vocab_size}, but model.vocab_size is {cfg.vocab_size}: "
                          f"it must be at least {tokenizer_vocab_size + NUM_SENTINELS}")
    vocab = tokenizer_json["model"]["vocab"]
    clash = [sentinel_token(i) for i in range(NUM_SENTINELS) if sentinel_token(i) in vocab]
    if clash:
        raise ConfigError(f"checkpoint '{ckpt_dir}': the tokenizer already has {clash[0]} as an ordinary "
                          "token, so the T5 sentinels cannot take that name")
    for index in range(NUM_SENTINELS):
        token_id = cfg.vocab_size - 1 - index
        vocab[sentinel_token(index)] = token_id
        tokenizer_json["added_tokens"].append({"id": token_id, "content": sentinel_token(index), "single_word": False,
                                               "lstrip": False, "rstrip": False, "normalized": False,
                                               "special": True})
    # transformers >= 5 reads extra_special_tokens, 4.x additional_special_tokens
    sentinels = [sentinel_token(i) for i in range(NUM_SENTINELS)]
    return tokenizer_json, {"extra_special_tokens": sentinels, "additional_special_tokens": sentinels}


def _import_tokenizer(tokenizer_json: dict[str, Any], cfg: ModelConfig, path: Path) -> dict[str, Any]:
    """``tokenizer_json`` less the sentinels an export added; TokenizerError when they sit at
    other ids than span corruption would use for this model."""
    names = {sentinel_token(i) for i in range(NUM_SENTINELS)}
    sentinels = {entry["content"]: entry["id"] for entry in tokenizer_json.get("added_tokens", [])
                 if entry.get("content") in names}
    if not sentinels:
        return tokenizer_json
    moved = [name for index in range(NUM_SENTINELS) if sentinels.get(name := sentinel_token(index))
             != cfg.vocab_size - 1 - index]
    if moved:
        raise TokenizerError(f"'{path}' has T5 sentinels at other ids than lmforge uses ({moved[0]} should be "
                             f"{cfg.vocab_size - 1 - int(moved[0][10:-1])}, the top ids of the model's "
                             "vocabulary): pass tokenizer_dir (--tokenizer_dir) with an lmforge tokenizer")
    tokenizer_json["added_tokens"] = [entry for entry in tokenizer_json["added_tokens"]
                                      if entry["content"] not in sentinels]
    vocab = (tokenizer_json.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        for name in sentinels:
            vocab.pop(name, None)
    return tokenizer_json


def _max_seq_len_from_tokenizer_config(cfg: ModelConfig, tokenizer_config: dict[str, Any]) -> ModelConfig:
    """T5's config has no length limit (relative positions); an lmforge export records ours as
    tokenizer_config.json's model_max_length, so take it back from there when it is plausible."""
    value = tokenizer_config.get("model_max_length")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 1_000_000:
        return dataclasses.replace(cfg, max_seq_len=value)
    return cfg


HF = HFMapping(
    model_type="t5", classes={"seq2seq_lm": "T5ForConditionalGeneration"}, config_to_hf=config_to_hf,
    config_from_hf=config_from_hf, to_hf_state_dict=to_hf_state_dict, from_hf_state_dict=from_hf_state_dict,
    # a head saved without its own tensor is the shared embedding (transformers 5 ties it in every
    # model it builds from a config; `from_hf_state_dict` then copies the embedding)
    optional_tensors=frozenset({"lm_head.weight"}), prepare_hf_model=_untie_head,
    fix_config_json=_untied_config_json, export_tokenizer=_export_tokenizer, import_tokenizer=_import_tokenizer,
    config_from_tokenizer_config=_max_seq_len_from_tokenizer_config,
    # Saved without the LM head: T5Model (encoder-decoder), T5EncoderModel (the encoder alone).
    # For fine-tuning, the decoder counts as part of the seq2seq head, so an encoder alone can
    # start a seq2seq model whose decoder keeps its fresh init (warm-starting an encoder-decoder
    # from an encoder checkpoint, Rothe et al. 2020).
    bases={"T5Model": "", "T5EncoderModel": ""}, head_prefixes=("decoder_", "output."))

FAMILY = register_family(Family(
    name="t5", summary="pre-norm encoder-decoder with relative position bias and RMS norms", blocks=t5.BLOCKS, heads=("seq2seq_lm",), build=build, default_task="span_corruption",
    presets=PRESETS, generation="seq2seq", validate=validate, approx_parameters=approx_parameters,
    attention_layers=attention_layers, hf=HF))
