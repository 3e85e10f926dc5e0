"""The generation fast path (fused, frozen projection weights; single-query attention) computes
what the plain modules compute: same tokens, logits equal to rounding, parameters untouched."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.generate import generate, generate_seq2seq
from lmforge.models import T5Model, blocks, build_model
from lmforge.models.blocks import (Attention, FrozenLinear, SwiGLUMLP, _packed_linear_available, inference_weights,
                                   matmul_attention)

FAMILIES = ["llama-tiny", "gpt2-tiny", "falcon-tiny", "mistral-tiny"]
# LMFORGE_PACKED_LINEAR's values, and "unavailable": a torch without the oneDNN op (auto then)
PACKING = ["auto", "on", "off", "unavailable"]


def _packing(mode: str, monkeypatch) -> None:
    """Set FrozenLinear's kernel choice for this test, with a fresh decision cache."""
    monkeypatch.setattr(blocks, "_packed_choices", {})
    if mode == "unavailable":
        monkeypatch.setattr(blocks, "_packed_linear_available", lambda: False)
        monkeypatch.delenv(blocks.PACKED_LINEAR_ENV, raising=False)
    else:
        monkeypatch.setenv(blocks.PACKED_LINEAR_ENV, mode)


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
@pytest.mark.parametrize("packing", PACKING)
def test_frozen_linear_is_the_concatenated_linears(rows_hint, bias, packing, monkeypatch):
    _packing(packing, monkeypatch)
    torch.manual_seed(0)
    linears = [torch.nn.Linear(32, n, bias=bias) for n in (16, 8, 8)]
    frozen = FrozenLinear(linears, rows_hint)
    # on: packed for oneDNN whenever this torch has it; off / unavailable: never; auto: as timed
    available = packing != "unavailable" and _packed_linear_available()
    key = (32, 32, rows_hint, torch.get_num_threads(), torch.float32, bias)
    if packing == "auto" and available:
        assert list(blocks._packed_choices) == [key]
        assert (frozen.packed is not None) == blocks._packed_choices[key]
    else:
        assert blocks._packed_choices == {}  # nothing timed
        assert (frozen.packed is not None) == (packing == "on" and available)
    assert (frozen.weight is None) == (frozen.packed is not None)  # one weight copy either way
    if frozen.weight is not None:
        assert frozen.weight.shape == (32, 32)
    x_BTD = torch.randn(3, 5, 32)
    with torch.inference_mode():
        expected = torch.cat([linear(x_BTD) for linear in linears], dim=-1)
        got = frozen(x_BTD)
    assert got.shape == (3, 5, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not _packed_linear_available(), reason="this torch has no oneDNN linear")
@pytest.mark.parametrize("packed_wins", [True, False])
def test_auto_keeps_the_kernel_the_timing_found_faster_and_times_each_key_once(packed_wins, monkeypatch):
    _packing("auto", monkeypatch)
    timed = []

    def fake_timing(weight, packed, bias, rows):
        timed.append((tuple(weight.shape), rows, bias is not None))
        return packed_wins

    monkeypatch.setattr(blocks, "_packed_is_faster", fake_timing)
    torch.manual_seed(0)
    a, b = torch.nn.Linear(32, 16, bias=False), torch.nn.Linear(32, 16, bias=False)
    first = FrozenLinear([a], 4)
    assert (first.packed is not None) == packed_wins and (first.weight is None) == packed_wins
    # the same key (another layer of the same shape, or the next generation): no new timing
    again = FrozenLinear([b], 4)
    assert timed == [((16, 32), 4, False)] and (again.packed is not None) == packed_wins
    # another row count, thread count, shape or bias is another key: timed once each
    FrozenLinear([a], 8)
    FrozenLinear([a, b], 4)
    FrozenLinear([torch.nn.Linear(32, 16)], 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        FrozenLinear([a], 4)
    finally:
        torch.set_num_threads(threads)
    assert timed == [((16, 32), 4, False), ((16, 32), 8, False), ((32, 32), 4, False), ((16, 32), 4, True),
                     ((16, 32), 4, False)]
    assert len(blocks._packed_choices) == 5
    # on and off override the cached decision without timing
    monkeypatch.setenv(blocks.PACKED_LINEAR_ENV, "on")
    assert FrozenLinear([a], 4).packed is not None
    monkeypatch.setenv(blocks.PACKED_LINEAR_ENV, "off")
    assert FrozenLinear([a], 4).packed is None
    assert len(timed) == 5


@pytest.mark.skipif(not _packed_linear_available(), reason="this torch has no oneDNN linear")
def test_auto_timing_leaves_the_random_stream_alone(monkeypatch):
    _packing("auto", monkeypatch)
    linear = torch.nn.Linear(64, 48)
    torch.manual_seed(123)
    FrozenLinear([linear], 2)
    assert len(blocks._packed_choices) == 1  # it did time
    drawn = torch.rand(4)
    torch.manual_seed(123)
    assert torch.equal(drawn, torch.rand(4))


@pytest.mark.parametrize("packing", ["on", "auto"])
def test_only_fp32_on_cpu_outside_autocast_is_packed(packing, monkeypatch):
    _packing(packing, monkeypatch)
    linear = torch.nn.Linear(32, 16).double()
    assert FrozenLinear([linear], 2).packed is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert FrozenLinear([linear.float()], 2).packed is None
    assert blocks._packed_choices == {}


@pytest.mark.parametrize("value", ["ON", " off ", ""])
def test_packed_linear_mode_reads_the_environment(value, monkeypatch):
    monkeypatch.setenv(blocks.PACKED_LINEAR_ENV, value)
    assert blocks.packed_linear_mode() == (value.strip().lower() or "auto")
    monkeypatch.delenv(blocks.PACKED_LINEAR_ENV)
    assert blocks.packed_linear_mode() == "auto"


def test_an_unknown_packed_linear_mode_is_a_config_error(monkeypatch):
    monkeypatch.setenv(blocks.PACKED_LINEAR_ENV, "yes")
    with pytest.raises(ConfigError, match="LMFORGE_PACKED_LINEAR='yes' is not one of auto, on, off"):
        FrozenLinear([torch.nn.Linear(8, 8)], 1)


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
@pytest.mark.parametrize("packing", ["auto", "on", "off"])
def test_fast_logits_match_plain_for_prefill_and_cached_steps(preset, batch_size, packing, monkeypatch):
    _packing(packing, monkeypatch)
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
@pytest.mark.parametrize("packing", PACKING)
def test_fast_generation_gives_the_plain_tokens(preset, packing, monkeypatch):
    _packing(packing, monkeypatch)
    model = _randomised(preset, **({"sliding_window": 8} if preset == "mistral-tiny" else {}))
    prompt_BT = torch.randint(0, 256, (4, 6))
    fast_BN = _tokens(model, prompt_BT, 24, fast=True)
    assert fast_BN.shape == (4, 24)
    assert torch.equal(fast_BN, _tokens(model, prompt_BT, 24, fast=False))
    assert torch.equal(_tokens(model, prompt_BT[:1], 24, fast=True), fast_BN[:1])  # batch 1
    assert model.layers[0].attn.frozen is None  # dropped when the generator finished


@pytest.mark.parametrize("packing", ["auto", "on", "off"])
def test_fast_seq2seq_generation_gives_the_plain_tokens(packing, monkeypatch):
    _packing(packing, monkeypatch)
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
