"""The chunked head + cross-entropy: the same loss and gradients as full logits, hand-checked."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_pretrain_config
from lmforge.config import ModelConfig
from lmforge.linear_cross_entropy import checkpointed_cross_entropy, linear_cross_entropy
from lmforge.models import build_model
from lmforge.objectives import causal_lm_loss


def reference(h, weight, targets, ignore_index=-100):
    return causal_lm_loss((h @ weight.t())[None], targets[None], ignore_index)


def test_hand_computed_value_and_gradient():
    # One row, D = 1, V = 2: logits (0, ln 3), target 1 -> loss = ln(1 + 3) - ln 3 = ln(4/3);
    # dloss/dlogits = softmax - onehot = (1/4, 3/4 - 1) = (1/4, -1/4); dloss/dh = that @ W = -ln3/4.
    h = torch.tensor([[1.0]], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([[0.0], [math.log(3.0)]], dtype=torch.float64, requires_grad=True)
    loss = linear_cross_entropy(h, weight, torch.tensor([1]))
    assert loss.item() == pytest.approx(math.log(4 / 3), abs=1e-12)
    loss.backward()
    assert h.grad.item() == pytest.approx(-math.log(3.0) / 4, abs=1e-12)
    assert weight.grad[:, 0].tolist() == pytest.approx([0.25, -0.25], abs=1e-12)


@pytest.mark.parametrize("max_chunk_elements", [7, 40, 1 << 21])  # 1 row a chunk, 5 rows (uneven), all rows
def test_matches_full_logits_values_and_gradients(max_chunk_elements):
    torch.manual_seed(0)
    h = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 8, (13,))
    targets[[2, 9]] = -100  # ignored rows carry no loss and no gradient
    got = linear_cross_entropy(h, weight, targets, max_chunk_elements=max_chunk_elements)
    grads = torch.autograd.grad(got * 3.0, (h, weight))  # a scaled loss (grad accumulation, fp16 scaler)
    expected = reference(h, weight, targets)
    expected_grads = torch.autograd.grad(expected * 3.0, (h, weight))
    torch.testing.assert_close(got, expected)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)
    assert grads[0][[2, 9]].abs().max().item() == 0.0


def test_all_targets_ignored_gives_zero_not_nan():
    h = torch.randn(4, 3, requires_grad=True)
    weight = torch.randn(5, 3, requires_grad=True)
    loss = linear_cross_entropy(h, weight, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0 and h.grad.abs().max().item() == 0.0 and weight.grad.abs().max().item() == 0.0


@pytest.mark.parametrize("requires_grad", [False, True])  # True: parameters under torch.no_grad (evaluation)
def test_without_gradients_only_the_value(requires_grad):
    torch.manual_seed(1)
    h, weight, targets = torch.randn(9, 4), torch.randn(6, 4, requires_grad=requires_grad), torch.randint(0, 6, (9,))
    with torch.no_grad():
        got = linear_cross_entropy(h, weight, targets, max_chunk_elements=12)
        expected = reference(h, weight, targets)
    assert got.grad_fn is None
    torch.testing.assert_close(got, expected)


def test_bf16_autocast_is_close_to_fp32():
    torch.manual_seed(2)
    h = torch.randn(32, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(h, weight, targets, max_chunk_elements=200)
    got.backward()
    assert got.dtype == torch.float32 and h.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32
    expected = reference(h.detach(), weight.detach(), targets)
    assert got.item() == pytest.approx(expected.item(), rel=2e-2)


def test_bad_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match=r"wants h \(N, D\) and targets \(N,\)"):
        linear_cross_entropy(torch.randn(2, 3, 4), torch.randn(5, 4), torch.zeros(6, dtype=torch.long))


@pytest.mark.parametrize("max_chunk_elements", [7, 40, 1 << 21])
def test_checkpointed_path_matches_full_logits_for_any_logits_function(max_chunk_elements):
    # a logits function that is not a plain h W^T (a bias and a nonlinearity), chunked 1, 5
    # (uneven) or 13 rows at a time: the same value and gradients as the full logits
    torch.manual_seed(0)
    h = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 8, (13,))
    targets[[2, 9]] = -100

    def logits_fn(h_CD):
        return torch.tanh(h_CD @ weight.t()) * 3.0 + bias

    got = checkpointed_cross_entropy(logits_fn, h, targets, 8, max_chunk_elements=max_chunk_elements)
    grads = torch.autograd.grad(got * 3.0, (h, weight, bias))
    expected = causal_lm_loss(logits_fn(h)[None], targets[None])
    expected_grads = torch.autograd.grad(expected * 3.0, (h, weight, bias))
    torch.testing.assert_close(got, expected)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)
    every_ignored = checkpointed_cross_entropy(logits_fn, h, torch.full((13,), -100), 8)
    assert every_ignored.item() == 0.0


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny"])
def test_model_loss_path_equals_logits_then_loss(preset):
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset=preset, vocab_size=97, max_seq_len=16)).double()
    inputs, targets = torch.randint(0, 97, (3, 16)), torch.randint(0, 97, (3, 16))
    fused = model(inputs, targets_BT=targets)
    fused_grads = torch.autograd.grad(fused, list(model.parameters()))
    plain = causal_lm_loss(model(inputs), targets)
    plain_grads = torch.autograd.grad(plain, list(model.parameters()))
    torch.testing.assert_close(fused, plain)
    for g, e in zip(fused_grads, plain_grads):
        torch.testing.assert_close(g, e)


def test_training_with_and_without_the_fused_loss_takes_the_same_steps(tiny_run, tmp_path):
    import json

    from lmforge.train.loop import pretrain

    def losses(run):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in records if "loss" in r]

    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "fused", max_steps=4))
    pretrain(tiny_pretrain_config(tiny_run, tmp_path / "plain", max_steps=4,
                                  **{"task.options": {"fused_loss": False}}))
    assert losses(tmp_path / "fused") == pytest.approx(losses(tmp_path / "plain"), abs=1e-5)


@pytest.mark.parametrize("frozen", ["weight", "hidden"])
def test_a_frozen_input_gets_no_gradient_and_the_other_the_same_one(frozen):
    """LoRA freezes the head: the fused path then computes only the hidden states' gradient
    (and, with frozen hidden states, only the weight's), equal to the full-logits path's."""
    torch.manual_seed(0)
    h_ND, w_VD = torch.randn(12, 8), torch.randn(20, 8)
    targets_N = torch.randint(0, 20, (12,))
    fused = [h_ND.clone().requires_grad_(frozen != "hidden"), w_VD.clone().requires_grad_(frozen != "weight")]
    plain = [h_ND.clone().requires_grad_(frozen != "hidden"), w_VD.clone().requires_grad_(frozen != "weight")]
    linear_cross_entropy(fused[0], fused[1], targets_N, max_chunk_elements=40).backward()
    causal_lm_loss((plain[0] @ plain[1].t())[None], targets_N[None]).backward()
    for ours, reference in zip(fused, plain):
        if reference.grad is None:
            assert ours.grad is None
        else:
            torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-5, atol=1e-6)
