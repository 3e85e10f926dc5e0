"""Weight and config mapping between our `Transformer` and HF `GPT2LMHeadModel`, `LlamaForCausalLM`,
`MistralForCausalLM` and `FalconForCausalLM`, and between our BERT classes and HF's (BertForMaskedLM,
BertForSequenceClassification, BertForTokenClassification; see the BERT block), and between our
`T5Model` and HF `T5ForConditionalGeneration` (the T5 block at the end).

The mapping is a list of rules (our keys, HF key, transpose?) that runs both ways: HF GPT-2
fuses q, k and v into one `c_attn` (our three projections concatenated along output rows) and
its Conv1D layers store weights as (in, out), hence the transpose. HF Falcon (falcon-7b's
multi-query layout) fuses them into `query_key_value` as the H query heads, then the one key
head, then the one value head: again our three projections concatenated, of unequal sizes. Our
RoPE uses HF's "rotate half" pairing, so Llama/Mistral/Falcon q/k rows need no permutation.
`transformers` is imported only where needed.
"""

from __future__ import annotations

from typing import Any

import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.presets import resolve_model_config

Rule = tuple[list[str], str, bool]  # (our keys, concatenated along dim 0; HF key; transpose)

# The `transformers` causal-LM class of each family.
HF_MODEL_CLASSES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                    "falcon": "FalconForCausalLM",
                    "bert": "BertForMaskedLM",  # (and the BERT classification heads, see the BERT block)
                    "t5": "T5ForConditionalGeneration"}


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError("Hugging Face conversion needs transformers: pip install 'lmforge[hf]'") from None
    return transformers


def _rules(cfg: ModelConfig) -> list[Rule]:
    """Every weight and bias of the model with its HF name."""
    rules: list[Rule] = []

    def add(ours: list[str], hf: str, transpose: bool = False, has_bias: bool = True) -> None:
        rules.append(([f"{o}.weight" for o in ours], f"{hf}.weight", transpose))
        if has_bias:
            rules.append(([f"{o}.bias" for o in ours], f"{hf}.bias", False))

    if cfg.family == "gpt2":
        rules.append((["tok_embeddings.weight"], "transformer.wte.weight", False))
        rules.append((["pos_embeddings.weight"], "transformer.wpe.weight", False))
        for i in range(cfg.num_layers):
            ours, hf = f"layers.{i}", f"transformer.h.{i}"
            add([f"{ours}.attn_norm"], f"{hf}.ln_1")
            add([f"{ours}.attn.{p}_proj" for p in "qkv"], f"{hf}.attn.c_attn", transpose=True)
            add([f"{ours}.attn.out_proj"], f"{hf}.attn.c_proj", transpose=True)
            add([f"{ours}.mlp_norm"], f"{hf}.ln_2")
            add([f"{ours}.mlp.in_proj"], f"{hf}.mlp.c_fc", transpose=True)
            add([f"{ours}.mlp.out_proj"], f"{hf}.mlp.c_proj", transpose=True)
        add(["norm"], "transformer.ln_f")
    elif cfg.family == "falcon":
        rules.append((["tok_embeddings.weight"], "transformer.word_embeddings.weight", False))
        for i in range(cfg.num_layers):
            ours, hf = f"layers.{i}", f"transformer.h.{i}"
            add([f"{ours}.attn_norm"], f"{hf}.input_layernorm")  # Falcon's LayerNorms always have a bias
            add([f"{ours}.attn.{p}_proj" for p in "qkv"], f"{hf}.self_attention.query_key_value",
                has_bias=cfg.bias)
            add([f"{ours}.attn.out_proj"], f"{hf}.self_attention.dense", has_bias=cfg.bias)
            add([f"{ours}.mlp.in_proj"], f"{hf}.mlp.dense_h_to_4h", has_bias=cfg.bias)
            add([f"{ours}.mlp.out_proj"], f"{hf}.mlp.dense_4h_to_h", has_bias=cfg.bias)
        add(["norm"], "transformer.ln_f")
    else:  # llama and mistral share HF's names
        rules.append((["tok_embeddings.weight"], "model.embed_tokens.weight", False))
        for i in range(cfg.num_layers):
            ours, hf = f"layers.{i}", f"model.layers.{i}"
            add([f"{ours}.attn_norm"], f"{hf}.input_layernorm", has_bias=False)
            for our_name, hf_name in (("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"),
                                      ("out_proj", "o_proj")):
                add([f"{ours}.attn.{our_name}"], f"{hf}.self_attn.{hf_name}", has_bias=cfg.bias)
            add([f"{ours}.mlp_norm"], f"{hf}.post_attention_layernorm", has_bias=False)
            for our_name, hf_name in (("gate_proj", "gate_proj"), ("up_proj", "up_proj"), ("out_proj", "down_proj")):
                add([f"{ours}.mlp.{our_name}"], f"{hf}.mlp.{hf_name}", has_bias=cfg.bias)
        add(["norm"], "model.norm", has_bias=False)
    rules.append((["output.weight"], "lm_head.weight", False))
    return rules


def to_hf_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> the HF model's. GPT-2 without biases gets zero biases (HF GPT-2 always
    has them; zeros compute the same function)."""
    cfg = resolve_model_config(cfg)
    if cfg.family == "bert":
        return _bert_to_hf_state_dict(state_dict)
    if cfg.family == "t5":
        return _t5_to_hf_state_dict(state_dict, cfg)
    out: dict[str, torch.Tensor] = {}
    for ours, hf_key, transpose in _rules(cfg):
        parts = []
        for key in ours:
            if key in state_dict:
                parts.append(state_dict[key])
            else:  # a bias the model does not have: as many zeros as its weight has rows
                weight = state_dict[key.rsplit(".", 1)[0] + ".weight"]
                parts.append(weight.new_zeros(weight.shape[0]))
        tensor = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        out[hf_key] = (tensor.t() if transpose else tensor).contiguous()
    return out


def _our_shapes(cfg: ModelConfig) -> dict[str, torch.Size]:
    """Every tensor of our state dict and its shape, from a model on the meta device (no memory)."""
    from lmforge.models.transformer import Transformer

    with torch.device("meta"):
        return {key: tensor.shape for key, tensor in Transformer(cfg).state_dict().items()}


def from_hf_state_dict(hf_state_dict: dict[str, torch.Tensor], cfg: ModelConfig,
                       bert_head: str = "masked_lm") -> dict[str, torch.Tensor]:
    """The HF model's state dict -> ours (loadable with `model.load_state_dict(..., strict=True)`);
    for bert, that of the `bert_head` model (a `BERT_HEADS` key)."""
    cfg = resolve_model_config(cfg)
    if cfg.family == "bert":
        return _bert_from_hf_state_dict(hf_state_dict, cfg, BERT_HEADS[bert_head])
    if cfg.family == "t5":
        return _t5_from_hf_state_dict(hf_state_dict, cfg)
    shapes = _our_shapes(cfg)
    out: dict[str, torch.Tensor] = {}
    for ours, hf_key, transpose in _rules(cfg):
        if hf_key not in hf_state_dict:
            if ours == ["output.weight"] and cfg.tie_embeddings:
                out["output.weight"] = out["tok_embeddings.weight"]
                continue
            raise ConfigError(f"HF state dict has no '{hf_key}': the HF model does not match the "
                              f"{cfg.family} config (layers, bias, tied embeddings)")
        tensor = hf_state_dict[hf_key]
        if ours[0] not in shapes:  # a bias HF always has (GPT-2) and this config leaves out
            if torch.count_nonzero(tensor):
                raise ConfigError(f"HF weights have a non-zero '{hf_key}': set model.bias true")
            continue
        tensor = tensor.t() if transpose else tensor
        for key, part in zip(ours, tensor.split([shapes[key][0] for key in ours], dim=0)):
            out[key] = part.contiguous()
    return out


def hf_config(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | None = None,
              pad_id: int | None = None) -> Any:
    """The `transformers` config (GPT2Config, LlamaConfig, MistralConfig or FalconConfig) describing
    the same model; ConfigError where the HF architecture cannot express it."""
    transformers = _import_transformers()
    cfg = resolve_model_config(cfg)
    tokens = {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}
    if cfg.family == "bert":
        return _bert_hf_config(cfg, tokens)
    if cfg.family == "t5":
        return _t5_hf_config(cfg, tokens)
    if cfg.sliding_window and cfg.family != "mistral":
        raise ConfigError(f"HF {cfg.family} has no sliding-window attention: set model.sliding_window to 0 "
                          "or use model.family mistral")
    if cfg.family == "falcon":
        if cfg.num_kv_heads != 1:
            raise ConfigError("HF Falcon export supports the falcon-7b multi-query layout only: set "
                              "model.num_kv_heads to 1")
        return transformers.FalconConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.dim, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, num_kv_heads=1, multi_query=True, parallel_attn=True,
            new_decoder_architecture=False, alibi=False, bias=cfg.bias, ffn_hidden_size=cfg.hidden_dim,
            activation="gelu", max_position_embeddings=cfg.max_seq_len, layer_norm_epsilon=cfg.norm_eps,
            rope_theta=cfg.rope_theta, hidden_dropout=cfg.dropout, attention_dropout=cfg.dropout,
            initializer_range=cfg.init_std, tie_word_embeddings=cfg.tie_embeddings, **tokens)
    if cfg.family == "mistral":
        if cfg.bias:
            raise ConfigError("HF Mistral has no biases: set model.bias false")
        return transformers.MistralConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.dim // cfg.num_heads, hidden_act="silu",
            max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
            sliding_window=cfg.sliding_window or None, attention_dropout=cfg.dropout,
            initializer_range=cfg.init_std, tie_word_embeddings=cfg.tie_embeddings, **tokens)
    if cfg.family == "gpt2":
        if cfg.num_kv_heads != cfg.num_heads:
            raise ConfigError("HF GPT-2 has no grouped-query attention: set model.num_kv_heads to 0")
        return transformers.GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.max_seq_len, n_embd=cfg.dim, n_layer=cfg.num_layers,
            n_head=cfg.num_heads, n_inner=cfg.hidden_dim, activation_function="gelu_pytorch_tanh",
            resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
            layer_norm_epsilon=cfg.norm_eps, initializer_range=cfg.init_std,
            tie_word_embeddings=cfg.tie_embeddings, **tokens)
    return transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.dim // cfg.num_heads, hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        attention_bias=cfg.bias, mlp_bias=cfg.bias, attention_dropout=cfg.dropout,
        initializer_range=cfg.init_std, tie_word_embeddings=cfg.tie_embeddings, **tokens)


def _plain_rope_theta(config: Any) -> float:
    """The RoPE base of an HF config; ConfigError for any RoPE scaling (not implemented here)."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConfigError(f"RoPE scaling '{rope.get('rope_type', rope.get('type'))}' is not supported: "
                          "only plain RoPE")
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _head_dim_matches(config: Any, name: str) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim * config.num_attention_heads != config.hidden_size:
        raise ConfigError(f"HF {name} with head_dim * num_attention_heads != hidden_size is not supported")


def _falcon_config_from_hf(config: Any) -> ModelConfig:
    """falcon-7b's architecture only: the 40b/180b "new decoder architecture" (grouped KV layout,
    two LayerNorms), ALiBi and sequential blocks would build a different model, so they raise."""
    unsupported = {"alibi": config.alibi, "new_decoder_architecture": config.new_decoder_architecture,
                   "parallel_attn=False": not config.parallel_attn, "multi_query=False": not config.multi_query}
    for option, present in unsupported.items():
        if present:
            raise ConfigError(f"HF Falcon option {option} is not supported: only the falcon-7b architecture "
                              "(rotary, multi-query, parallel attention/MLP)")
    if config.activation != "gelu":
        raise ConfigError(f"HF Falcon activation '{config.activation}' is not supported (exact GELU only)")
    return resolve_model_config(ModelConfig(
        family="falcon", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
        dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        num_kv_heads=1, hidden_dim=config.ffn_hidden_size, norm_eps=config.layer_norm_epsilon,
        rope_theta=_plain_rope_theta(config), tie_embeddings=config.tie_word_embeddings, bias=config.bias,
        init_std=config.initializer_range))


def model_config_from_hf(config: Any) -> ModelConfig:
    """Our `ModelConfig` for an HF GPT2/Llama/Mistral/Falcon config; raises ConfigError for what we lack."""
    model_type = getattr(config, "model_type", "")
    if model_type == "bert":
        return _bert_config_from_hf(config)
    if model_type == "t5":
        return _t5_config_from_hf(config)
    if model_type == "falcon":
        return _falcon_config_from_hf(config)
    if model_type == "mistral":
        _head_dim_matches(config, "Mistral")
        return resolve_model_config(ModelConfig(
            family="mistral", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
            dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
            num_kv_heads=config.num_key_value_heads or config.num_attention_heads,
            hidden_dim=config.intermediate_size, norm_eps=config.rms_norm_eps,
            rope_theta=_plain_rope_theta(config), sliding_window=config.sliding_window or 0,
            tie_embeddings=config.tie_word_embeddings, bias=False, init_std=config.initializer_range))
    if model_type == "gpt2":
        if config.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ConfigError(f"HF GPT-2 activation '{config.activation_function}' is not supported (tanh GELU only)")
        if config.scale_attn_by_inverse_layer_idx or config.reorder_and_upcast_attn:
            raise ConfigError("HF GPT-2 options scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn "
                              "are not supported")
        return resolve_model_config(ModelConfig(
            family="gpt2", vocab_size=config.vocab_size, max_seq_len=config.n_positions, dim=config.n_embd,
            num_layers=config.n_layer, num_heads=config.n_head, hidden_dim=config.n_inner or 4 * config.n_embd,
            norm_eps=config.layer_norm_epsilon, tie_embeddings=config.tie_word_embeddings, bias=True,
            init_std=config.initializer_range))
    if model_type == "llama":
        rope_theta = _plain_rope_theta(config)
        _head_dim_matches(config, "Llama")
        if config.attention_bias != getattr(config, "mlp_bias", False):
            raise ConfigError("HF Llama with attention_bias != mlp_bias is not supported")
        return resolve_model_config(ModelConfig(
            family="llama", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
            dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
            num_kv_heads=config.num_key_value_heads or config.num_attention_heads,
            hidden_dim=config.intermediate_size, norm_eps=config.rms_norm_eps,
            rope_theta=rope_theta,
            tie_embeddings=config.tie_word_embeddings, bias=config.attention_bias,
            init_std=config.initializer_range))
    raise ConfigError(f"HF model type '{model_type}' is not supported: use a gpt2, llama, mistral, falcon, "
                      "bert or t5 model")


def to_hf_model(model: torch.nn.Module, bos_id: int | None = None, eos_id: int | None = None,
                pad_id: int | None = None, id2label: dict[int, str] | None = None) -> Any:
    """The `transformers` model of our model's family and head with its weights (fp32, on CPU, in
    eval mode): a causal LM for decoders, T5ForConditionalGeneration for t5, and for bert the
    class named like ours (BertForMaskedLM / ...ForSequenceClassification / ...ForTokenClassification;
    `id2label` names a classifier's labels, LABEL_i when not given)."""
    config = hf_config(model.config, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
    if model.config.family == "bert":
        return _bert_to_hf_model(model, config, id2label)
    if model.config.family == "t5":
        return _t5_to_hf_model(model, config)
    transformers = _import_transformers()
    hf_model = getattr(transformers, HF_MODEL_CLASSES[model.config.family])(config)
    state_dict = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    hf_model.load_state_dict(to_hf_state_dict(state_dict, model.config), strict=True)
    return hf_model.eval()


def from_hf_model(hf_model: Any) -> torch.nn.Module:
    """Our `Transformer` with an HF GPT-2 / Llama / Mistral / Falcon model's weights."""
    from lmforge.models.transformer import Transformer

    if getattr(hf_model.config, "model_type", "") == "bert":
        return _bert_from_hf_model(hf_model)
    if getattr(hf_model.config, "model_type", "") == "t5":
        return _t5_from_hf_model(hf_model)
    model = Transformer(model_config_from_hf(hf_model.config))
    model.load_state_dict(from_hf_state_dict(hf_model.state_dict(), model.config), strict=True)
    return model


# --------------------------------------------------------------------------- BERT
# The BERT encoder (Devlin et al. 2019) and its heads. HF BERT keeps q, k and v separate
# nn.Linear layers, so the mapping is a pure rename (no fusing, no transposes). Our head classes
# carry HF's class names (BertForMaskedLM, BertForSequenceClassification,
# BertForTokenClassification), which is how `to_hf_model` picks the HF class.

_BERT_LAYER_NAMES = (("attn.q_proj", "attention.self.query"), ("attn.k_proj", "attention.self.key"),
                     ("attn.v_proj", "attention.self.value"), ("attn.out_proj", "attention.output.dense"),
                     ("attn_norm", "attention.output.LayerNorm"), ("mlp.in_proj", "intermediate.dense"),
                     ("mlp.out_proj", "output.dense"), ("mlp_norm", "output.LayerNorm"))
_BERT_NAMES = (("tok_embeddings", "bert.embeddings.word_embeddings"),
               ("pos_embeddings", "bert.embeddings.position_embeddings"),
               ("type_embeddings", "bert.embeddings.token_type_embeddings"),
               ("embed_norm", "bert.embeddings.LayerNorm"), ("pooler", "bert.pooler.dense"),
               ("head_dense", "cls.predictions.transform.dense"),
               ("head_norm", "cls.predictions.transform.LayerNorm"),
               ("output.weight", "cls.predictions.decoder.weight"), ("output.bias", "cls.predictions.bias"),
               ("classifier", "classifier"))
# HF BertForMaskedLM lists its output bias twice (the decoder's bias is the same tensor).
_BERT_HF_ALIASES = {"cls.predictions.decoder.bias": "cls.predictions.bias"}


def _bert_hf_key(key: str) -> str:
    """HF's name of one of our BERT state-dict keys."""
    if key.startswith("layers."):
        _, index, rest = key.split(".", 2)
        for ours, hf in _BERT_LAYER_NAMES:
            if rest.startswith(ours + "."):
                return f"bert.encoder.layer.{index}.{hf}{rest[len(ours):]}"
    for ours, hf in _BERT_NAMES:
        if key == ours or key.startswith(ours + "."):
            return hf + key[len(ours):]
    raise KeyError(f"no HF name for BERT key '{key}'")


# Which head a BERT checkpoint has: the value of "head" in an lmforge checkpoint's config.json ->
# our (and HF's) class name. Without that field the head is read off the weights (`bert_head_of_weights`).
BERT_HEADS = {"masked_lm": "BertForMaskedLM", "sequence_classification": "BertForSequenceClassification",
              "token_classification": "BertForTokenClassification"}


def bert_head_of_weights(keys: set[str], num_labels: int) -> str:
    """The BERT head (a `BERT_HEADS` key) whose state dict has these keys: `classifier.*` marks a
    classifier, over the pooled first token (with `pooler.*`) or over every token (without);
    `output.*` the MLM head. ConfigError when the keys fit none or contradict `num_labels`."""
    if "classifier.weight" in keys:
        head = "sequence_classification" if "pooler.weight" in keys else "token_classification"
    elif "output.bias" in keys:
        head = "masked_lm"
    else:
        raise ConfigError("BERT weights have neither an MLM head (output.*) nor a classifier (classifier.*): "
                          "not a checkpoint of BertForMaskedLM/SequenceClassification/TokenClassification")
    if (head == "masked_lm") != (num_labels <= 0):
        raise ConfigError(f"BERT weights hold a {head} head but model.num_labels is {num_labels}: "
                          "a classifier needs num_labels > 0, the MLM head 0")
    return head


# HF BERT tensors an MLM import may find and leaves out: the pooler and next-sentence head of
# BertForPreTraining checkpoints (Devlin et al. 2019, sec. 3.1, task 2; RoBERTa dropped it).
BERT_PRETRAINING_EXTRAS = ("bert.pooler.", "cls.seq_relationship.")


def bert_head_of_hf_config(config: Any) -> str:
    """The BERT head (a `BERT_HEADS` key) an HF config.json's `architectures` names."""
    names = list(getattr(config, "architectures", None) or ["BertForMaskedLM"])
    # a pretraining checkpoint (original BERT releases) is the MLM model plus the pooler and the
    # next-sentence head, which the import leaves out (`BERT_PRETRAINING_EXTRAS`)
    heads = [head for head, name in BERT_HEADS.items()
             if name in names or (head == "masked_lm" and "BertForPreTraining" in names)]
    if len(heads) != 1:
        raise ConfigError(f"HF BERT architecture {', '.join(names)} is not supported: use one of "
                          f"{', '.join(BERT_HEADS.values())}")
    return heads[0]


def _bert_classes() -> dict[str, type]:
    from lmforge.models import bert

    return {cls.__name__: cls for cls in (bert.BertForMaskedLM, bert.BertForSequenceClassification,
                                          bert.BertForTokenClassification)}


def _bert_to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {_bert_hf_key(key): tensor for key, tensor in state_dict.items()}
    for alias, key in _BERT_HF_ALIASES.items():
        if key in out:
            out[alias] = out[key]
    return out


def _bert_from_hf_state_dict(hf_state_dict: dict[str, torch.Tensor], cfg: ModelConfig,
                             model_class: str = "BertForMaskedLM") -> dict[str, torch.Tensor]:
    """HF BERT weights -> ours for `model_class`. HF tensors our model lacks (the pooler and
    next-sentence head of a pretraining checkpoint, buffers) are left out; a missing one raises."""
    with torch.device("meta"):
        our_keys = list(_bert_classes()[model_class](cfg).state_dict())
    out: dict[str, torch.Tensor] = {}
    for key in our_keys:
        hf_key = _bert_hf_key(key)
        if hf_key in hf_state_dict:
            out[key] = hf_state_dict[hf_key]
        elif key == "output.weight" and cfg.tie_embeddings:
            out[key] = hf_state_dict["bert.embeddings.word_embeddings.weight"]
        else:
            raise ConfigError(f"HF state dict has no '{hf_key}': the HF model does not match the bert config "
                              f"({model_class}: layers, token types, head)")
    return out


def _bert_hf_config(cfg: ModelConfig, tokens: dict[str, int | None]) -> Any:
    """HF BertConfig; with `num_labels` > 0 (a classifier) also HF's num_labels (labels LABEL_i)."""
    transformers = _import_transformers()
    if not cfg.bias or cfg.type_vocab_size <= 0:
        raise ConfigError("HF BERT has biases and token-type embeddings: set model.bias true and "
                          "model.type_vocab_size >= 1")
    extra = {"num_labels": cfg.num_labels} if cfg.num_labels > 0 else {}
    return transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.hidden_dim, hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_seq_len, type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.init_std, layer_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
        **{k: v for k, v in tokens.items() if v is not None}, **extra)


def _bert_config_from_hf(config: Any) -> ModelConfig:
    """Our config for an HF BertConfig (absolute positions, exact GELU, encoder only). The
    classification width (`num_labels`) is left 0: HF sets it even on MLM configs, so
    `from_hf_model` fills it for the classification heads only."""
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


def _bert_to_hf_model(model: torch.nn.Module, config: Any, id2label: dict[int, str] | None) -> Any:
    transformers = _import_transformers()
    name = type(model).__name__
    if name not in BERT_HEADS.values():
        raise ConfigError(f"BERT class {name} has no HF counterpart: use one of {', '.join(BERT_HEADS.values())}")
    if name != "BertForMaskedLM" and id2label:
        if sorted(int(i) for i in id2label) != list(range(model.config.num_labels)):
            raise ConfigError(f"id2label names labels {sorted(id2label)} but the classifier has "
                              f"{model.config.num_labels} (ids 0..{model.config.num_labels - 1})")
        config.id2label = {int(i): str(label) for i, label in id2label.items()}
        config.label2id = {label: i for i, label in config.id2label.items()}
    hf_model = getattr(transformers, name)(config)
    state_dict = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    hf_model.load_state_dict(_bert_to_hf_state_dict(state_dict), strict=True)
    return hf_model.eval()


def _bert_from_hf_model(hf_model: Any) -> torch.nn.Module:
    import dataclasses

    name = type(hf_model).__name__
    classes = _bert_classes()
    if name not in classes:
        raise ConfigError(f"HF class {name} is not supported: use one of {', '.join(classes)}")
    cfg = _bert_config_from_hf(hf_model.config)
    if name != "BertForMaskedLM":
        cfg = dataclasses.replace(cfg, num_labels=hf_model.config.num_labels)
    model = classes[name](cfg)
    model.load_state_dict(_bert_from_hf_state_dict(hf_model.state_dict(), cfg, name), strict=True)
    return model



# --------------------------------------------------------------------------- T5
# T5 (Raffel et al. 2020) as HF `T5ForConditionalGeneration` lays it out: `shared` embedding
# (aliased as encoder/decoder `embed_tokens`), `block.{i}.layer.{j}` sub-layers (0 self-attention,
# 1 cross-attention in the decoder, then the feed-forward), separate q/k/v/o Linears without
# biases: a pure rename. HF keeps the relative position table in block 0's self-attention; we
# keep it on the stack (`encoder_pos_bias`, `decoder_pos_bias`), the same single table.
#
# Tied vs untied: v1.0 ties the head and rescales the decoder output by dim**-0.5; v1.1
# (released with untied heads) does neither. transformers 5 always ties the head when it
# builds a model from a config and keys the rescaling on `scale_decoder_outputs` (the
# `tie_word_embeddings` value the config was given); v1.1 checkpoints get their own head at
# load time. `_t5_to_hf_model` unties the head itself for an untied model.


def _t5_rules(cfg: ModelConfig) -> list[tuple[str, str]]:
    """(our key, HF key) for every T5 tensor except the head and the embedding aliases."""
    gated = cfg.feed_forward == "gated-gelu"
    mlp = ((("gate_proj", "wi_0"), ("up_proj", "wi_1"), ("out_proj", "wo")) if gated
           else (("in_proj", "wi"), ("out_proj", "wo")))
    attn = (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "o"))
    rules = [("tok_embeddings.weight", "shared.weight")]
    for stack, num_layers in (("encoder", cfg.num_layers), ("decoder", cfg.num_decoder_layers or cfg.num_layers)):
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


def _t5_to_hf_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {hf: state_dict[ours] for ours, hf in _t5_rules(cfg)}
    out["encoder.embed_tokens.weight"] = out["decoder.embed_tokens.weight"] = out["shared.weight"]
    out["lm_head.weight"] = state_dict.get("output.weight", out["shared.weight"])
    return out


def _t5_from_hf_state_dict(hf_state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for ours, hf in _t5_rules(cfg):
        if hf not in hf_state_dict:
            raise ConfigError(f"HF state dict has no '{hf}': the HF model does not match the t5 config "
                              "(layers, feed_forward)")
        out[ours] = hf_state_dict[hf]
    if cfg.tie_embeddings:
        out["output.weight"] = out["tok_embeddings.weight"]
    else:  # a head saved without its own tensor is the (tied) embedding
        out["output.weight"] = hf_state_dict.get("lm_head.weight", out["tok_embeddings.weight"])
    return out


def _t5_hf_config(cfg: ModelConfig, tokens: dict[str, int | None]) -> Any:
    """HF T5Config; pad doubles as the decoder start (as `SpanCorruptionTask` trains it: labels
    shifted right behind pad); pad 0 and eos 1 unless given, as in T5."""
    transformers = _import_transformers()
    ids = {"pad_token_id": 0, "eos_token_id": 1}
    ids.update({k: v for k, v in tokens.items() if v is not None and k != "bos_token_id"})
    return transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.dim, d_kv=cfg.head_dim or cfg.dim // cfg.num_heads,
        d_ff=cfg.hidden_dim, num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers or cfg.num_layers,
        num_heads=cfg.num_heads, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance, dropout_rate=cfg.dropout,
        layer_norm_epsilon=cfg.norm_eps, feed_forward_proj=cfg.feed_forward,
        tie_word_embeddings=cfg.tie_embeddings, decoder_start_token_id=ids["pad_token_id"], **ids)


# The feed-forward variants we build, with the activation and gating HF must then have:
# feed_forward_proj -> (is_gated_act, accepted dense_act_fn). gelu_new and gelu_pytorch_tanh are
# both the tanh GELU (T5 v1.1); a config.json may carry is_gated_act/dense_act_fn keys that
# override what feed_forward_proj implies, and HF's model follows those keys, so all three are checked.
_T5_FEED_FORWARD = {"relu": (False, ("relu",)), "gated-gelu": (True, ("gelu_new", "gelu_pytorch_tanh"))}


def _t5_check_supported(config: Any) -> None:
    """ConfigError (one line, naming the option) for an HF T5 config we would compute differently."""
    ff = config.feed_forward_proj
    if ff not in _T5_FEED_FORWARD:
        raise ConfigError(f"HF T5 feed_forward_proj '{ff}' is not supported: relu (T5 v1.0) or gated-gelu (T5 v1.1)")
    gated, activations = _T5_FEED_FORWARD[ff]
    if bool(getattr(config, "is_gated_act", gated)) != gated:
        raise ConfigError(f"HF T5 is_gated_act={config.is_gated_act} with feed_forward_proj '{ff}' is not "
                          f"supported: set is_gated_act {str(gated).lower()} or drop it from config.json")
    if getattr(config, "dense_act_fn", activations[0]) not in activations:
        raise ConfigError(f"HF T5 dense_act_fn '{config.dense_act_fn}' with feed_forward_proj '{ff}' is not "
                          f"supported: use {activations[0]}")
    if not getattr(config, "is_encoder_decoder", True) or getattr(config, "is_decoder", False):
        raise ConfigError("HF T5 used as an encoder-only or decoder-only model is not supported: "
                          "only T5ForConditionalGeneration (is_encoder_decoder true)")
    if config.relative_attention_num_buckets < 4 or \
            config.relative_attention_max_distance <= config.relative_attention_num_buckets // 4:
        raise ConfigError(f"HF T5 relative attention with {config.relative_attention_num_buckets} buckets and "
                          f"max distance {config.relative_attention_max_distance} is not supported: "
                          "need >= 4 buckets and max distance > buckets / 4")


def _t5_config_from_hf(config: Any) -> ModelConfig:
    """Our config for an HF T5Config: v1.0 (relu, tied and rescaled) or v1.1 (gated-gelu,
    untied, not rescaled); other activations, a gating or activation that contradicts
    feed_forward_proj, and non-seq2seq use raise (`_t5_check_supported`). Our `tie_embeddings` follows the
    rescaling: an HF model that rescales without tying (or the reverse, as transformers 5
    builds a v1.1 model from a config) loads as the untied variant with its head's weights,
    which computes the same function. max_seq_len is T5's training length, 512 (the relative
    bias itself has no limit)."""
    _t5_check_supported(config)
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


def _t5_to_hf_model(model: torch.nn.Module, config: Any) -> Any:
    transformers = _import_transformers()
    hf_model = transformers.T5ForConditionalGeneration(config)
    if not model.config.tie_embeddings and hf_model.lm_head.weight is hf_model.shared.weight:
        hf_model.lm_head.weight = torch.nn.Parameter(hf_model.shared.weight.detach().clone())
    state_dict = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    hf_model.load_state_dict(_t5_to_hf_state_dict(state_dict, model.config), strict=True)
    return hf_model.eval()


def _t5_from_hf_model(hf_model: Any) -> torch.nn.Module:
    from lmforge.models.t5 import T5Model

    model = T5Model(_t5_config_from_hf(hf_model.config))
    model.load_state_dict(_t5_from_hf_state_dict(hf_model.state_dict(), model.config), strict=True)
    return model
