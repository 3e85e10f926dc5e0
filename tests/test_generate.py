"""Sampling transforms against hand-computed values, and the generation loop."""

import math
from types import SimpleNamespace

import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.errors import LmforgeError
from lmforge.generate import apply_repetition_penalty, generate, sample_next_token, top_k_filter, top_p_filter
from lmforge.models import build_model

INF = float("inf")


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits_BV = torch.tensor([[2.0, -1.0, 0.5, 3.0], [1.0, 1.0, -4.0, 0.0]])
    seen_BS = torch.tensor([[0, 1, 1], [2, 3, 3]])  # a repeated token is penalised once
    out = apply_repetition_penalty(logits_BV, seen_BS, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0], [1.0, 1.0, -8.0, 0.0]]
    assert logits_BV[0, 0] == 2.0  # input untouched
    assert apply_repetition_penalty(logits_BV, seen_BS, 1.0) is logits_BV


def test_extreme_penalty_and_temperature_keep_sampling_finite():
    """A repetition penalty of 1e-40 or 1e40 and a temperature of 1e-300 are in range (> 0):
    the logits stay finite and a tiny temperature samples the likeliest token (its limit)."""
    logits = torch.tensor([[3.0, -2.0, 1.0, 0.5]])
    for penalty in (1e-40, 1e40):
        penalised = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), penalty)
        assert bool(torch.isfinite(penalised).all())
        token = sample_next_token(penalised, temperature=1.0, generator=torch.Generator().manual_seed(0))
        assert int(token) in range(4)
    for seed in range(5):
        token = sample_next_token(logits, temperature=1e-300, generator=torch.Generator().manual_seed(seed))
        assert int(token) == 0


def test_top_k_keeps_the_k_largest():
    logits_BV = torch.tensor([[1.0, 3.0, 2.0, 0.0], [5.0, -1.0, 4.0, 6.0]])
    assert top_k_filter(logits_BV, 2).tolist() == [[-INF, 3.0, 2.0, -INF], [5.0, -INF, -INF, 6.0]]
    assert top_k_filter(logits_BV, 0) is logits_BV
    assert top_k_filter(logits_BV, 4) is logits_BV


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = [0.15, 0.5, 0.05, 0.3]  # sorted: 0.5, 0.3, 0.15, 0.05; mass before: 0, 0.5, 0.8, 0.95
    logits_BV = torch.tensor([probs]).log()
    kept = lambda p: torch.isfinite(top_p_filter(logits_BV, p))[0].tolist()  # noqa: E731
    assert kept(0.4) == [False, True, False, False]
    assert kept(0.7) == [False, True, False, True]
    assert kept(0.9) == [True, True, False, True]
    assert kept(0.99) == [True, True, True, True]
    assert kept(0.0) == [False, True, False, False]  # the most likely token always survives
    assert top_p_filter(logits_BV, 1.0) is logits_BV
    torch.testing.assert_close(top_p_filter(logits_BV, 0.7)[0, 1], logits_BV[0, 1])


def test_temperature_zero_is_argmax_and_filters_restrict_samples():
    logits_BV = torch.tensor([[0.0, 2.0, 1.0, 1.9]] * 500)
    assert sample_next_token(logits_BV, temperature=0).tolist() == [1] * 500
    generator = torch.Generator().manual_seed(0)
    drawn = set(sample_next_token(logits_BV, temperature=1.0, top_k=2, generator=generator).tolist())
    assert drawn == {1, 3}
    # Temperature divides the logits: between tokens 1 and 3 (gap 0.5 here) p(1)/p(3) is
    # exp(0.5 / T): e = 2.718 at T = 0.5, exp(0.5) = 1.649 at T = 1. With 20,000 draws the
    # ratio's standard deviation is about 1.6% of it, so 6% tells the two temperatures apart
    # (a test at rel=0.3 on 500 draws passed with the temperature ignored).
    wide_BV = torch.tensor([[0.0, 2.0, 1.0, 1.5]] * 20_000)
    for temperature in (0.5, 1.0):
        drawn = sample_next_token(wide_BV, temperature=temperature, top_k=2, generator=generator)
        assert set(drawn.unique().tolist()) == {1, 3}
        ratio = (drawn == 1).sum().item() / (drawn == 3).sum().item()
        assert ratio == pytest.approx(math.exp(0.5 / temperature), rel=0.06), temperature


class CountingModel(torch.nn.Module):
    """Always predicts (last token + 1) % V: makes the loop's stopping rules easy to check."""

    def __init__(self, vocab_size: int = 16, max_seq_len: int = 32):
        super().__init__()
        self.config = SimpleNamespace(max_seq_len=max_seq_len)
        self.vocab_size = vocab_size
        self.output = torch.nn.Identity()
        self.positions_seen = 0

    def new_kv_cache(self, batch_size, max_len):
        return SimpleNamespace(max_len=max_len)

    def hidden_states(self, input_ids_BT, kv_cache):
        self.positions_seen += input_ids_BT.shape[1]
        assert self.positions_seen <= kv_cache.max_len
        return torch.nn.functional.one_hot((input_ids_BT + 1) % self.vocab_size, self.vocab_size).float()


def test_eos_stops_when_every_row_finished():
    steps = list(generate(CountingModel(), torch.tensor([[5], [3]]), max_new_tokens=10, temperature=0, eos_id=7))
    assert [s.tolist() for s in steps] == [[6, 4], [7, 5], [7, 6], [7, 7]]


def test_generation_stops_at_max_seq_len():
    model = CountingModel(max_seq_len=32)
    steps = list(generate(model, torch.zeros(1, 29, dtype=torch.long), max_new_tokens=10, temperature=0))
    assert [s.item() for s in steps] == [1, 2, 3]  # 29 + 3 = 32 positions
    assert model.positions_seen == 29 + 2  # prefill once, then one token per step; the last is never fed
    with pytest.raises(LmforgeError, match="shorten the prompt"):
        next(generate(model, torch.zeros(1, 33, dtype=torch.long), max_new_tokens=1))


def _tiny_llama():
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset="llama-tiny"))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2 if param.dim() > 1 else 1.0)
    return model


def test_greedy_generation_matches_full_forward_argmax_and_restores_mode():
    model = _tiny_llama().train()
    prompt_BT = torch.randint(0, 256, (2, 5))
    tokens_BN = torch.stack(list(generate(model, prompt_BT, max_new_tokens=12, temperature=0)), dim=1)
    assert model.training
    ids_BT = prompt_BT
    model.eval()
    with torch.no_grad():
        for _ in range(12):
            ids_BT = torch.cat([ids_BT, model(ids_BT)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(tokens_BN, ids_BT[:, 5:])
    again_BN = torch.stack(list(generate(model, prompt_BT, max_new_tokens=12, temperature=0)), dim=1)
    assert torch.equal(tokens_BN, again_BN)


def test_sampling_is_reproducible_with_a_seed():
    model = _tiny_llama()
    prompt_BT = torch.randint(0, 256, (2, 4))

    def sample(seed):
        generator = torch.Generator().manual_seed(seed)
        return torch.stack(list(generate(model, prompt_BT, 20, temperature=1.0, top_k=50, top_p=0.9,
                                         repetition_penalty=1.3, generator=generator)), dim=1)

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))
