"""Losses against values worked out by hand with math.log/exp."""

import math

import pytest
import torch

from lmforge.errors import DataError
from lmforge.objectives import (
    bits_per_byte,
    causal_lm_loss,
    masked_lm_loss,
    masked_token_accuracy,
    perplexity,
    seq2seq_loss,
    shift_right,
    token_loss_sum,
)

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


# ---------------------------------------------------------------- masked LM and seq2seq


def test_masked_lm_loss_scores_only_labelled_positions_without_shift():
    # labels sit at the corrupted positions themselves: position 1 is scored against id 0
    loss = masked_lm_loss(LOGITS_BTV, torch.tensor([[-100, 0]]))
    assert loss.item() == pytest.approx(NATS_1, abs=1e-6)
    loss = masked_lm_loss(LOGITS_BTV, TARGETS_BT)
    assert loss.item() == pytest.approx((NATS_0 + NATS_1) / 2, abs=1e-6)
    assert masked_lm_loss(LOGITS_BTV, torch.full((1, 2), -100)).item() == 0.0


def test_masked_token_accuracy_counts_argmax_hits_on_labelled_positions():
    # argmax is id 2 at both positions ([1, 2, 3] and [0, 0, log 2])
    correct, count = masked_token_accuracy(LOGITS_BTV, torch.tensor([[2, 0]]))
    assert (correct.item(), count.item()) == (1, 2)
    correct, count = masked_token_accuracy(LOGITS_BTV, torch.tensor([[-100, 2]]))
    assert (correct.item(), count.item()) == (1, 1)
    correct, count = masked_token_accuracy(LOGITS_BTV, torch.full((1, 2), -100))
    assert (correct.item(), count.item()) == (0, 0)
    assert correct.dtype == torch.int64


def test_seq2seq_loss_is_the_mean_over_non_padded_targets():
    # two rows; the second row's last target is padding
    logits = torch.cat([LOGITS_BTV, LOGITS_BTV.flip(1)])
    labels = torch.tensor([[2, 0], [0, -100]])
    # row 1 position 0 has logits [0, 0, log 2] scored against 0: NATS_1 again
    expected = (NATS_0 + 2 * NATS_1) / 3
    assert seq2seq_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)
    pad_as_ignore = seq2seq_loss(logits, torch.tensor([[2, 0], [0, 1]]), ignore_index=1)
    assert pad_as_ignore.item() == pytest.approx(expected, abs=1e-6)


def test_shift_right_prepends_the_start_token_and_pads_ignored_positions():
    labels = torch.tensor([[5, 6, 7, -100], [8, 2, -100, -100]])
    decoder_inputs = shift_right(labels, decoder_start_id=1, pad_id=1)
    assert decoder_inputs.tolist() == [[1, 5, 6, 7], [1, 8, 2, 1]]
    decoder_inputs = shift_right(labels, decoder_start_id=0, pad_id=1)
    assert decoder_inputs.tolist() == [[0, 5, 6, 7], [0, 8, 2, 1]]
    assert labels[0, 3].item() == -100  # not modified in place
