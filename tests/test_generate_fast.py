"""The generation fast path (fused, frozen projection weights; single-query attention) computes
what the plain modules compute: same tokens, logits equal to rounding, parameters untouched."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lmforge.config import ModelConfig
from lmforge.generate import generate, generate_seq2seq
from lmforge.models import T5Model, blocks, build_model
from lmforge.models.blocks import (Attention, FrozenLinear, SwiGLUMLP, _packed_linear_available, inference_weights,
                                   matmul_attention)

FAMILIES = ["llama-tiny", "gpt2-tiny", "falcon-tiny", "mistral-tiny"]


def _randomised(preset: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny model with weights large enough that its logits are well separated (ties in the
    argmax would make "same tokens" depend on rounding)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(preset=preset, **overrides))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2 if param.dim() > 1 else 1.0)
    return model.eval()


def _tokens(model: torch.nn.Module, prompt_BT: torch.Tensor, num_new: int, fast: bool) -> torch.Tensor:
    return torch.stack(list(generate(model, prompt_BT, num_new, temperature=0.0, fast=fast)), dim=1)


@pytest.mark.parametrize("rows_hint", [1, 8])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("onednn", [True, False])
def test_frozen_linear_is_the_concatenated_linears(rows_hint, bias, onednn, monkeypatch):
    if not onednn:  # a torch without the oneDNN op: fused weights, plain F.linear
        monkeypatch.setattr(blocks, "_packed_linear_available", lambda: False)
    torch.manual_seed(0)
    linears = [torch.nn.Linear(32, n, bias=bias) for n in (16, 8, 8)]
    frozen = FrozenLinear(linears, rows_hint)
    # packed for oneDNN on CPU in fp32 when this torch has it; one weight copy either way
    assert (frozen.packed is not None) == (onednn and _packed_linear_available())
    assert (frozen.weight is None) == (frozen.packed is not None)
    if frozen.weight is not None:
        assert frozen.weight.shape == (32, 32)
    x_BTD = torch.randn(3, 5, 32)
    with torch.inference_mode():
        expected = torch.cat([linear(x_BTD) for linear in linears], dim=-1)
        got = frozen(x_BTD)
    assert got.shape == (3, 5, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_inference_weights_leave_parameters_state_dict_and_gradients_alone():
    model = _randomised("llama-tiny")
    keys = list(model.state_dict())
    ids_BT = torch.randint(0, 256, (2, 6))
    with inference_weights(model, rows_hint=2):
        attn, mlp = model.layers[0].attn, model.layers[0].mlp
        assert attn.frozen is not None and mlp.frozen is not None
        model(ids_BT).sum().backward()  # autograd on: the plain parameters serve, so grads flow
        assert attn.frozen.built == {} and model.layers[0].attn.q_proj.weight.grad is not None
        with torch.inference_mode():
            model.train()(ids_BT)  # training mode (dropout): the plain modules too
            assert attn.frozen.built == {}
            model.eval()(ids_BT)
        assert sorted(attn.frozen.built) == ["out", "qkv"] and sorted(mlp.frozen.built) == ["gate_up", "out"]
    # back to the class default, nothing left on the instance
    assert attn.frozen is None and "frozen" not in attn.__dict__ and "frozen" not in mlp.__dict__
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("preset", FAMILIES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_fast_logits_match_plain_for_prefill_and_cached_steps(preset, batch_size):
    # mistral-tiny with a 4-token window so the cached steps cross it (the masked path)
    model = _randomised(preset, **({"sliding_window": 4} if preset == "mistral-tiny" else {}))
    ids_BT = torch.randint(0, 256, (batch_size, 10))
    with torch.inference_mode():
        plain_BTV = model(ids_BT)
        with inference_weights(model, rows_hint=batch_size):
            full_BTV = model(ids_BT)
            cache = model.new_kv_cache(batch_size, 10)
            steps = [model(ids_BT[:, :4], cache)]  # prefill, then one token at a time
            steps += [model(ids_BT[:, t:t + 1], cache) for t in range(4, 10)]
    torch.testing.assert_close(full_BTV, plain_BTV, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat(steps, dim=1), plain_BTV, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("preset", FAMILIES)
@pytest.mark.parametrize("onednn", [True, False])
def test_fast_generation_gives_the_plain_tokens(preset, onednn, monkeypatch):
    if not onednn:
        monkeypatch.setattr(blocks, "_packed_linear_available", lambda: False)
    model = _randomised(preset, **({"sliding_window": 8} if preset == "mistral-tiny" else {}))
    prompt_BT = torch.randint(0, 256, (4, 6))
    fast_BN = _tokens(model, prompt_BT, 24, fast=True)
    assert fast_BN.shape == (4, 24)
    assert torch.equal(fast_BN, _tokens(model, prompt_BT, 24, fast=False))
    assert torch.equal(_tokens(model, prompt_BT[:1], 24, fast=True), fast_BN[:1])  # batch 1
    assert model.layers[0].attn.frozen is None  # dropped when the generator finished


def test_fast_seq2seq_generation_gives_the_plain_tokens():
    torch.manual_seed(0)
    cfg = ModelConfig(preset="t5-tiny")
    for variant in (cfg, dataclasses.replace(cfg, feed_forward="gated-gelu", tie_embeddings=False)):
        model = T5Model(variant).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.normal_(0.0, 0.3 if param.dim() > 1 else 1.0)
        ids_BT = torch.randint(0, 256, (3, 7))
        mask_BT = torch.ones(3, 7, dtype=torch.long)
        mask_BT[1, 5:] = 0  # a padded row: cross-attention takes the masked path

        def tokens(fast: bool) -> torch.Tensor:
            return torch.stack(list(generate_seq2seq(model, ids_BT, 10, temperature=0.0,
                                                     attention_mask_BT=mask_BT, fast=fast)), dim=1)

        assert torch.equal(tokens(True), tokens(False))


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_matmul_attention_is_sdpa(num_kv_heads):
    torch.manual_seed(0)
    q_BH1K = torch.randn(2, 4, 1, 8)
    k_BGSK, v_BGSK = torch.randn(2, num_kv_heads, 5, 8), torch.randn(2, num_kv_heads, 5, 8)
    bias_1H1S = torch.randn(1, 4, 1, 5)
    expected = F.scaled_dot_product_attention(q_BH1K, k_BGSK, v_BGSK, enable_gqa=True)
    torch.testing.assert_close(matmul_attention(q_BH1K, k_BGSK, v_BGSK), expected)
    expected = F.scaled_dot_product_attention(q_BH1K, k_BGSK, v_BGSK, attn_mask=bias_1H1S, enable_gqa=True,
                                              scale=1.0)
    torch.testing.assert_close(matmul_attention(q_BH1K, k_BGSK, v_BGSK, bias_1H1S, scale=1.0), expected)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_matmul_attention_with_a_learned_bias_matches_sdpa_values_and_gradients(num_kv_heads):
    # The T5 training path: many queries, a bias that needs a gradient, a causal part hidden
    # by the dtype's minimum (finite, as HF T5); values and all four gradients as SDPA's.
    torch.manual_seed(0)
    q = torch.randn(2, 4, 6, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, num_kv_heads, 6, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, num_kv_heads, 6, 8, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    hidden = torch.tensor(torch.finfo(torch.float64).min, dtype=torch.float64)
    grad_out = torch.randn(2, 4, 6, 8, dtype=torch.float64)

    def run(attend):
        y = attend(q, k, v, torch.where(causal, bias, hidden))
        grads = torch.autograd.grad(y, (q, k, v, bias), grad_out)
        return y, grads

    expected = run(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=1.0,
                                                                     enable_gqa=True))
    got = run(lambda q, k, v, m: matmul_attention(q, k, v, m, scale=1.0))
    torch.testing.assert_close(got[0], expected[0])
    for got_grad, expected_grad in zip(got[1], expected[1]):
        torch.testing.assert_close(got_grad, expected_grad)


def test_modules_outside_a_model_use_their_own_weights():
    # Attention/MLP built alone carry no frozen weights: the class default is None
    assert Attention(16, 2, 2, False, 0.0).frozen is None and SwiGLUMLP(16, 32, False).frozen is None
