"""Losses against values worked out by hand with math.log/exp."""

import math

import pytest
import torch

from lmforge.errors import DataError
from lmforge.objectives import bits_per_byte, causal_lm_loss, perplexity, token_loss_sum

# One sequence of two positions over a vocabulary of three.
LOGITS_BTV = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, math.log(2.0)]]])
TARGETS_BT = torch.tensor([[2, 0]])
# -log softmax: position 0 scores token 2, position 1 scores token 0.
NATS_0 = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3.0  # 0.40760596
NATS_1 = math.log(1 + 1 + 2) - 0.0  # log 4


def test_causal_lm_loss_matches_hand_computation():
    loss = causal_lm_loss(LOGITS_BTV, TARGETS_BT)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx((NATS_0 + NATS_1) / 2, abs=1e-6)
    assert NATS_0 == pytest.approx(0.40760596, abs=1e-7)


def test_ignored_targets_carry_no_loss_and_are_not_counted():
    loss = causal_lm_loss(LOGITS_BTV, torch.tensor([[2, -100]]))
    assert loss.item() == pytest.approx(NATS_0, abs=1e-6)
    # any id can serve as the ignore index, e.g. a pad id of 0
    loss_pad0 = causal_lm_loss(LOGITS_BTV, torch.tensor([[2, 0]]), ignore_index=0)
    assert loss_pad0.item() == pytest.approx(NATS_0, abs=1e-6)


def test_all_ignored_batch_gives_zero_loss_and_zero_gradient():
    logits = LOGITS_BTV.clone().requires_grad_(True)
    loss = causal_lm_loss(logits, torch.full((1, 2), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradient_is_softmax_minus_onehot_over_count():
    logits = LOGITS_BTV.clone().requires_grad_(True)
    causal_lm_loss(logits, TARGETS_BT).backward()
    z = [1.0, 2.0, 3.0]
    softmax0 = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
    expected0 = [(p - (i == 2)) / 2 for i, p in enumerate(softmax0)]
    assert logits.grad[0, 0].tolist() == pytest.approx(expected0, abs=1e-6)
    assert logits.grad[0, 1].tolist() == pytest.approx([(0.25 - 1) / 2, 0.25 / 2, 0.5 / 2], abs=1e-6)


def test_bf16_logits_are_scored_in_float32():
    torch.manual_seed(0)
    logits_bf16 = (torch.randn(2, 5, 11) * 4).to(torch.bfloat16).requires_grad_(True)
    targets = torch.randint(0, 11, (2, 5))
    loss = causal_lm_loss(logits_bf16, targets)
    assert loss.dtype == torch.float32
    reference = torch.nn.functional.cross_entropy(logits_bf16.detach().double().reshape(-1, 11),
                                                  targets.reshape(-1))
    assert loss.item() == pytest.approx(reference.item(), abs=1e-5)
    loss.backward()
    assert logits_bf16.grad.dtype == torch.bfloat16


def test_token_loss_sum_accumulates_to_the_token_weighted_mean():
    nats_a, count_a = token_loss_sum(LOGITS_BTV, TARGETS_BT)
    nats_b, count_b = token_loss_sum(LOGITS_BTV, torch.tensor([[-100, 0]]))
    assert (count_a, count_b) == (2, 1)
    assert isinstance(count_a, int)
    assert nats_a.item() == pytest.approx(NATS_0 + NATS_1, abs=1e-6)
    mean = (nats_a + nats_b).item() / (count_a + count_b)
    assert mean == pytest.approx((NATS_0 + 2 * NATS_1) / 3, abs=1e-6)
    nats_none, count_none = token_loss_sum(LOGITS_BTV, torch.full((1, 2), -100))
    assert (nats_none.item(), count_none) == (0.0, 0)


def test_bits_per_byte_and_perplexity():
    assert bits_per_byte(100 * math.log(2), 100) == pytest.approx(1.0)
    # 3 tokens of 2 nats each over 12 bytes: 6 / (ln 2 * 12)
    assert bits_per_byte(6.0, 12) == pytest.approx(6.0 / (0.6931471805599453 * 12))
    with pytest.raises(DataError, match="evaluation split"):
        bits_per_byte(1.0, 0)
    assert perplexity(math.log(5.0)) == pytest.approx(5.0)
    assert perplexity(0.0) == 1.0
    assert perplexity(1e4) == math.inf
