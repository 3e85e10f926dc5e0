"""Weight and config mapping between our `Transformer` and HF `GPT2LMHeadModel` / `LlamaForCausalLM`.

The mapping is a list of rules (our keys, HF key, transpose?) that runs both ways: HF GPT-2
fuses q, k and v into one `c_attn` (our three projections concatenated along output rows) and
its Conv1D layers store weights as (in, out), hence the transpose. Our RoPE uses HF's "rotate half"
pairing, so Llama q/k rows need no permutation. `transformers` is imported only where needed.
"""

from __future__ import annotations

from typing import Any

import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.presets import resolve_model_config

Rule = tuple[list[str], str, bool]  # (our keys, concatenated along dim 0; HF key; transpose)


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError("HF interop needs the `transformers` package: pip install 'lmforge[test]' "
                          "or pip install transformers") from None
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
    else:
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


def from_hf_state_dict(hf_state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The HF model's state dict -> ours (loadable with `model.load_state_dict(..., strict=True)`)."""
    cfg = resolve_model_config(cfg)
    out: dict[str, torch.Tensor] = {}
    for ours, hf_key, transpose in _rules(cfg):
        if hf_key not in hf_state_dict:
            if ours == ["output.weight"] and cfg.tie_embeddings:
                out["output.weight"] = out["tok_embeddings.weight"]
                continue
            raise ConfigError(f"HF state dict has no '{hf_key}': the HF model does not match the "
                              f"{cfg.family} config (layers, bias, tied embeddings)")
        tensor = hf_state_dict[hf_key]
        if hf_key.endswith(".bias") and not cfg.bias:
            if torch.count_nonzero(tensor):
                raise ConfigError(f"HF weights have a non-zero '{hf_key}': set model.bias true")
            continue
        tensor = tensor.t() if transpose else tensor
        for key, part in zip(ours, tensor.chunk(len(ours), dim=0)):
            out[key] = part.contiguous()
    return out


def hf_config(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | None = None,
              pad_id: int | None = None) -> Any:
    """The `transformers` config (GPT2Config or LlamaConfig) describing the same model."""
    transformers = _import_transformers()
    cfg = resolve_model_config(cfg)
    tokens = {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}
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


def model_config_from_hf(config: Any) -> ModelConfig:
    """Our `ModelConfig` for an HF GPT2Config / LlamaConfig; raises ConfigError for what we lack."""
    model_type = getattr(config, "model_type", "")
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
        rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise ConfigError(f"RoPE scaling '{rope.get('rope_type')}' is not supported: only plain RoPE")
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        if head_dim * config.num_attention_heads != config.hidden_size:
            raise ConfigError("HF Llama with head_dim * num_attention_heads != hidden_size is not supported")
        if config.attention_bias != getattr(config, "mlp_bias", False):
            raise ConfigError("HF Llama with attention_bias != mlp_bias is not supported")
        return resolve_model_config(ModelConfig(
            family="llama", vocab_size=config.vocab_size, max_seq_len=config.max_position_embeddings,
            dim=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
            num_kv_heads=config.num_key_value_heads or config.num_attention_heads,
            hidden_dim=config.intermediate_size, norm_eps=config.rms_norm_eps,
            rope_theta=float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))),
            tie_embeddings=config.tie_word_embeddings, bias=config.attention_bias,
            init_std=config.initializer_range))
    raise ConfigError(f"HF model type '{model_type}' is not supported: use a gpt2 or llama model")


def to_hf_model(model: torch.nn.Module, **token_ids: int | None) -> Any:
    """A `transformers` causal-LM with our model's weights (fp32, on CPU, in eval mode)."""
    transformers = _import_transformers()
    config = hf_config(model.config, **token_ids)
    cls = transformers.GPT2LMHeadModel if model.config.family == "gpt2" else transformers.LlamaForCausalLM
    hf_model = cls(config)
    state_dict = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    hf_model.load_state_dict(to_hf_state_dict(state_dict, model.config), strict=True)
    return hf_model.eval()


def from_hf_model(hf_model: Any) -> torch.nn.Module:
    """Our `Transformer` with an HF GPT-2 / Llama model's weights."""
    from lmforge.models.transformer import Transformer

    model = Transformer(model_config_from_hf(hf_model.config))
    model.load_state_dict(from_hf_state_dict(hf_model.state_dict(), model.config), strict=True)
    return model
