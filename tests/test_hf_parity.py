"""Numerical parity with HF transformers, both conversion directions: float32 logits within 64 ulps
of their scale and float64 logits within 64 float64 ulps (`parity.py` says why)."""

import dataclasses

import pytest
import torch

from parity import assert_logits_match, float64_hf

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.generate import generate
from lmforge.models import build_model, resolve_model_config

transformers = pytest.importorskip("transformers")
from lmforge.interop.hf import (  # noqa: E402
    HF_MODEL_CLASSES, from_hf_model, from_hf_state_dict, hf_config, model_config_from_hf, to_hf_model,
    to_hf_state_dict)

CONFIGS = {
    "gpt2": ModelConfig(preset="gpt2-tiny"),
    "gpt2-untied": ModelConfig(preset="gpt2-tiny", tie_embeddings=False, num_layers=3),
    "llama-gqa": ModelConfig(preset="llama-tiny", rope_theta=500000.0),
    "llama-mqa-tied-bias": ModelConfig(family="llama", vocab_size=96, max_seq_len=32, dim=48, num_layers=2,
                                       num_heads=6, num_kv_heads=1, bias=True, hidden_dim=80),
    # Window 8 over 20-token inputs: HF's sliding-window mask against ours.
    "mistral-window": ModelConfig(preset="mistral-tiny"),
    "mistral-mha-tied": ModelConfig(family="mistral", vocab_size=96, max_seq_len=32, dim=48, num_layers=2,
                                    num_heads=6, hidden_dim=80, rope_theta=500000.0),
    "falcon": ModelConfig(preset="falcon-tiny"),
    "falcon-untied-bias": ModelConfig(preset="falcon-tiny", tie_embeddings=False, bias=True, num_layers=3,
                                      rope_theta=500000.0),
}


def _random_model(cfg: ModelConfig) -> torch.nn.Module:
    """Our model with every tensor (norm gains and biases too) random, so the mapping is exercised."""
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1 if param.dim() > 1 else 0.5).add_(1.0 if param.dim() == 1 else 0.0)
    return model.eval()


def _ids(cfg: ModelConfig, batch_size: int = 2, length: int = 20) -> torch.Tensor:
    return torch.randint(0, resolve_model_config(cfg).vocab_size, (batch_size, length),
                         generator=torch.Generator().manual_seed(1))


DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])


@DTYPES
@pytest.mark.parametrize("name", CONFIGS)
def test_ours_to_hf_logits_match(name, dtype):
    model = _random_model(CONFIGS[name])
    hf_model = to_hf_model(model)
    ids_BT = _ids(model.config)
    with torch.no_grad(), float64_hf(dtype):
        assert_logits_match(model.to(dtype)(ids_BT), hf_model.to(dtype)(input_ids=ids_BT).logits)


@DTYPES
@pytest.mark.parametrize("name", CONFIGS)
def test_hf_to_ours_logits_match(name, dtype):
    cfg = resolve_model_config(CONFIGS[name])
    cls = getattr(transformers, HF_MODEL_CLASSES[cfg.family])
    torch.manual_seed(2)
    hf_model = cls(hf_config(cfg)).eval()
    with torch.no_grad():  # HF zero-inits biases and ones-inits norms: randomise them too
        for key, param in hf_model.named_parameters():
            if param.dim() == 1:
                param.normal_(1.0, 0.5)
    model = from_hf_model(hf_model).eval()
    assert model.config == dataclasses.replace(cfg, preset="")
    ids_BT = _ids(cfg)
    with torch.no_grad(), float64_hf(dtype):
        assert_logits_match(model.to(dtype)(ids_BT), hf_model.to(dtype)(input_ids=ids_BT).logits)


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_mapping_round_trips(name):
    model = _random_model(CONFIGS[name])
    ours = model.state_dict()
    back = from_hf_state_dict(to_hf_state_dict(ours, model.config), model.config)
    assert back.keys() == ours.keys()
    for key in ours:
        assert torch.equal(back[key], ours[key]), key


def test_config_round_trip_through_hf():
    for cfg in CONFIGS.values():
        resolved = resolve_model_config(cfg)
        assert model_config_from_hf(hf_config(resolved)) == dataclasses.replace(resolved, preset="")


def test_gpt2_without_bias_exports_zero_biases_and_rejects_nonzero_on_import():
    cfg = ModelConfig(preset="gpt2-tiny", bias=False)
    cfg = resolve_model_config(cfg, explicit_fields={"bias"})
    model = _random_model(cfg)
    hf_model = to_hf_model(model)
    ids_BT = _ids(cfg)
    with torch.no_grad():
        assert_logits_match(model(ids_BT), hf_model(input_ids=ids_BT).logits)
    hf_state = hf_model.state_dict()
    hf_state["transformer.h.0.attn.c_attn.bias"][0] = 1.0
    with pytest.raises(ConfigError, match="set model.bias true"):
        from_hf_state_dict(hf_state, cfg)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "mistral-window", "falcon"])
def test_greedy_generation_matches_hf_generate(name):
    model = _random_model(CONFIGS[name])
    hf_model = to_hf_model(model)
    prompt_BT = _ids(model.config, batch_size=2, length=6)
    ours_BN = torch.stack(list(generate(model, prompt_BT, max_new_tokens=15, temperature=0)), dim=1)
    hf_BT = hf_model.generate(prompt_BT, max_new_tokens=15, min_new_tokens=15, do_sample=False,
                              pad_token_id=0, attention_mask=torch.ones_like(prompt_BT))
    assert torch.equal(ours_BN, hf_BT[:, 6:])


def test_falcon_fused_qkv_layout_is_query_heads_then_key_then_value():
    model = _random_model(CONFIGS["falcon"])
    hf_state = to_hf_state_dict(model.state_dict(), model.config)
    qkv_weight = hf_state["transformer.h.1.self_attention.query_key_value.weight"]
    attn = model.layers[1].attn
    assert qkv_weight.shape == ((4 + 2) * 16, 64)  # H query heads + one key head + one value head
    assert torch.equal(qkv_weight[:64], attn.q_proj.weight)
    assert torch.equal(qkv_weight[64:80], attn.k_proj.weight)
    assert torch.equal(qkv_weight[80:], attn.v_proj.weight)


@pytest.mark.parametrize("hf_cfg,message", [
    (transformers.FalconConfig(alibi=True), "alibi is not supported"),
    (transformers.FalconConfig(new_decoder_architecture=True, num_kv_heads=8), "new_decoder_architecture"),
    (transformers.FalconConfig(parallel_attn=False), "parallel_attn=False"),
    (transformers.FalconConfig(multi_query=False), "multi_query=False"),
    (transformers.FalconConfig(activation="relu"), "activation 'relu'"),
    (transformers.FalconConfig(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
     "RoPE scaling 'linear'"),
    (transformers.MistralConfig(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}),
     "RoPE scaling 'dynamic'"),
    (transformers.MistralConfig(hidden_size=64, num_attention_heads=4, head_dim=32), "head_dim"),
])
def test_unsupported_hf_configs_raise(hf_cfg, message):
    with pytest.raises(ConfigError, match=message):
        model_config_from_hf(hf_cfg)


@pytest.mark.parametrize("cfg,message", [
    (ModelConfig(preset="falcon-tiny", num_kv_heads=2), "num_kv_heads to 1"),
    (ModelConfig(preset="llama-tiny", sliding_window=4), "HF llama has no sliding-window"),
    (ModelConfig(preset="falcon-tiny", sliding_window=4), "HF falcon has no sliding-window"),
    (ModelConfig(preset="mistral-tiny", bias=True), "HF Mistral has no biases"),
])
def test_configs_hf_cannot_express_raise(cfg, message):
    with pytest.raises(ConfigError, match=message):
        hf_config(cfg)


def test_mistral_window_round_trips_through_hf_config():
    assert hf_config(ModelConfig(preset="mistral-tiny")).sliding_window == 8
    no_window = resolve_model_config(ModelConfig(preset="mistral-tiny", sliding_window=0),
                                     explicit_fields={"sliding_window"})
    assert hf_config(no_window).sliding_window is None
    assert model_config_from_hf(hf_config(no_window)).sliding_window == 0


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_the_float32_bound_catches_one_gain_off_by_a_thousandth(name):
    """The bound is tight enough to matter: one element of the first norm's gain off by 1e-3 of
    its value (a far smaller error than any wrong mapping) moves the logits beyond it."""
    model = _random_model(CONFIGS[name])
    hf_model = to_hf_model(model)
    ids_BT = _ids(model.config)
    gain = next(p for p in hf_model.parameters() if p.dim() == 1)  # layer 0's first norm
    with torch.no_grad():
        gain[0] *= 1 + 1e-3
        with pytest.raises(AssertionError, match="ulps of their scale apart"):
            assert_logits_match(model(ids_BT), hf_model(input_ids=ids_BT).logits)
