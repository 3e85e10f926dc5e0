"""The generation fast path (`fast_decoding`: fused, frozen projection weights swapped in from
outside; single-query attention) computes what the plain modules compute: same tokens, logits
equal to rounding, parameters untouched, wrapped linears still called."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.generate import generate, generate_seq2seq
from lmforge.models import build_model, decoding
from lmforge.models.blocks import Attention, SwiGLUMLP, matmul_attention
from lmforge.models.decoding import FrozenLinear, FrozenProjection, _packed_linear_available, fast_decoding
from lmforge.models.heads import LMHead

FAMILIES = ["llama-tiny", "gpt2-tiny", "falcon-tiny", "mistral-tiny"]
# LMFORGE_PACKED_LINEAR's values, and "unavailable": a torch without the oneDNN op (auto then)
PACKING = ["auto", "on", "off", "unavailable"]


def _packing(mode: str, monkeypatch) -> None:
    """Set FrozenLinear's kernel choice for this test, with a fresh decision cache."""
    monkeypatch.setattr(decoding, "_packed_choices", {})
    if mode == "unavailable":
        monkeypatch.setattr(decoding, "_packed_linear_available", lambda: False)
        monkeypatch.delenv(decoding.PACKED_LINEAR_ENV, raising=False)
    else:
        monkeypatch.setenv(decoding.PACKED_LINEAR_ENV, mode)


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
        assert list(decoding._packed_choices) == [key]
        assert (frozen.packed is not None) == decoding._packed_choices[key]
    else:
        assert decoding._packed_choices == {}  # nothing timed
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

    monkeypatch.setattr(decoding, "_packed_is_faster", fake_timing)
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
    assert len(decoding._packed_choices) == 5
    # on and off override the cached decision without timing
    monkeypatch.setenv(decoding.PACKED_LINEAR_ENV, "on")
    assert FrozenLinear([a], 4).packed is not None
    monkeypatch.setenv(decoding.PACKED_LINEAR_ENV, "off")
    assert FrozenLinear([a], 4).packed is None
    assert len(timed) == 5


@pytest.mark.skipif(not _packed_linear_available(), reason="this torch has no oneDNN linear")
def test_auto_timing_leaves_the_random_stream_alone(monkeypatch):
    _packing("auto", monkeypatch)
    linear = torch.nn.Linear(64, 48)
    torch.manual_seed(123)
    FrozenLinear([linear], 2)
    assert len(decoding._packed_choices) == 1  # it did time
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
    assert decoding._packed_choices == {}


@pytest.mark.parametrize("value", ["ON", " off ", ""])
def test_packed_linear_mode_reads_the_environment(value, monkeypatch):
    monkeypatch.setenv(decoding.PACKED_LINEAR_ENV, value)
    assert decoding.packed_linear_mode() == (value.strip().lower() or "auto")
    monkeypatch.delenv(decoding.PACKED_LINEAR_ENV)
    assert decoding.packed_linear_mode() == "auto"


def test_an_unknown_packed_linear_mode_is_a_config_error(monkeypatch):
    monkeypatch.setenv(decoding.PACKED_LINEAR_ENV, "yes")
    with pytest.raises(ConfigError, match="LMFORGE_PACKED_LINEAR='yes' is not one of auto, on, off"):
        FrozenLinear([torch.nn.Linear(8, 8)], 1)


def test_fast_decoding_swaps_from_outside_and_restores_everything():
    model = _randomised("llama-tiny")
    state = {key: value.clone() for key, value in model.state_dict().items()}
    parameters = [id(p) for p in model.parameters()]
    attn, mlp = model.layers[0].attn, model.layers[0].mlp
    originals = (attn.q_proj, attn.out_proj, mlp.gate_proj, model.output)
    ids_BT = torch.randint(0, 256, (2, 6))
    with fast_decoding(model, rows_hint=2):
        assert all(isinstance(getattr(attn, name), FrozenProjection) for name in ("q_proj", "k_proj", "v_proj"))
        assert isinstance(model.output, decoding.FrozenHead)
        model(ids_BT).sum().backward()  # autograd on: the original modules serve, so grads flow
        assert attn.q_proj.original.weight.grad is not None
        # Q/K/V (and gate/up) share one product; it is built on first use without autograd
        assert attn.q_proj.product is attn.v_proj.product and attn.q_proj.product.frozen is None
        with torch.inference_mode():
            model(ids_BT)
        assert attn.q_proj.product.frozen is not None and mlp.gate_proj.product is mlp.up_proj.product
    assert (attn.q_proj, attn.out_proj, mlp.gate_proj, model.output) == originals
    assert [id(p) for p in model.parameters()] == parameters
    assert list(model.state_dict()) == list(state)
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


class CountingLinear(torch.nn.Linear):
    """A LoRA-like wrapper: a subclass of nn.Linear (so not swapped) that counts its calls."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CountingLinear.calls += 1
        return super().forward(x)


class ScaledLogitsHead(LMHead):
    """A head that overrides how logits are computed (not swapped)."""

    def logits(self, h_BTD: torch.Tensor) -> torch.Tensor:
        return super().logits(h_BTD) * 1.5


def test_wrapped_linears_and_heads_are_left_in_place_and_called(monkeypatch):
    model = _randomised("llama-tiny")
    prompt_BT = torch.randint(0, 256, (2, 5))
    plain_BN = _tokens(model, prompt_BT, 6, fast=False)
    for layer in model.layers:  # wrap every query projection and the MLP's up projection
        for parent, name in ((layer.attn, "q_proj"), (layer.mlp, "up_proj")):
            original = getattr(parent, name)
            wrapped = CountingLinear(original.in_features, original.out_features, bias=False)
            wrapped.weight = original.weight
            setattr(parent, name, wrapped)
    monkeypatch.setattr(CountingLinear, "calls", 0)
    with fast_decoding(model, rows_hint=2):
        attn = model.layers[0].attn
        assert type(attn.q_proj) is CountingLinear and type(model.layers[0].mlp.up_proj) is CountingLinear
        # the group is not fused, its plain members are still swapped one by one
        assert isinstance(attn.k_proj, FrozenProjection) and attn.k_proj.product is not attn.v_proj.product
    fast_BN = _tokens(model, prompt_BT, 6, fast=True)
    assert torch.equal(fast_BN, plain_BN)
    assert CountingLinear.calls == 2 * 2 * 6  # two per layer, two layers, a prefill and five steps
    head = ScaledLogitsHead(64, 256)
    head.weight = model.output.weight
    model.output = head
    with fast_decoding(model, rows_hint=2):
        assert model.output is head


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
        with fast_decoding(model, rows_hint=batch_size):
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
    assert type(model.layers[0].attn.q_proj) is torch.nn.Linear  # back when the generator finished


@pytest.mark.parametrize("packing", ["auto", "on", "off"])
def test_fast_seq2seq_generation_gives_the_plain_tokens(packing, monkeypatch):
    _packing(packing, monkeypatch)
    torch.manual_seed(0)
    cfg = ModelConfig(preset="t5-tiny")
    for variant in (cfg, dataclasses.replace(cfg, feed_forward="gated-gelu", tie_embeddings=False)):
        model = build_model(variant).eval()
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


def test_fusable_groups_are_declared_on_the_classes():
    assert Attention.fusable == (("q_proj", "k_proj", "v_proj"),) and SwiGLUMLP.fusable == (("gate_proj", "up_proj"),)
    # T5 cross-attention: queries and keys/values read different inputs, so they are not fused
    model = build_model(ModelConfig(preset="t5-tiny"))
    with fast_decoding(model, rows_hint=1):
        cross = model.decoder_layers[0].cross_attn
        assert cross.q_proj.product is not cross.k_proj.product is not cross.v_proj.product
        self_attn = model.decoder_layers[0].attn
        assert self_attn.q_proj.product is self_attn.k_proj.product
