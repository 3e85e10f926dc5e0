"""The output head owns its loss: the model's loss goes through the head module, and a head
that computes its logits differently (a wrapped or quantised head) still gets the right loss."""

import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.models import build_model
from lmforge.models.heads import LMHead
from lmforge.objectives import causal_lm_loss


class LowRankHead(LMHead):
    """A LoRA-like head: logits = h W^T + (h A) B, the override the loss must go through."""

    def __init__(self, dim: int, vocab_size: int, rank: int = 2):
        super().__init__(dim, vocab_size)
        self.down = torch.nn.Parameter(torch.randn(dim, rank, dtype=torch.float64) * 0.5)
        self.up = torch.nn.Parameter(torch.randn(rank, vocab_size, dtype=torch.float64) * 0.5)

    def logits(self, h_BTD: torch.Tensor) -> torch.Tensor:
        return super().logits(h_BTD) + (h_BTD @ self.down) @ self.up


def _model_with(head_cls, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(preset="llama-tiny", vocab_size=97, max_seq_len=16)).double()
    if head_cls is not None:
        head = head_cls(64, 97)
        head.weight = model.output.weight
        model.output = head
    return model


def test_the_plain_head_is_a_linear_with_the_same_key_and_tying():
    model = build_model(ModelConfig(preset="gpt2-tiny"))
    assert isinstance(model.output, LMHead) and isinstance(model.output, torch.nn.Linear)
    assert model.output.weight is model.tok_embeddings.weight and "output.weight" in model.state_dict()
    h_BTD = torch.randn(2, 3, 64)
    torch.testing.assert_close(model.output(h_BTD), h_BTD @ model.tok_embeddings.weight.t())


@pytest.mark.parametrize("head_cls", [None, LowRankHead])
def test_the_models_loss_is_the_heads_loss_with_its_gradients(head_cls):
    model = _model_with(head_cls)
    inputs_BT, targets_BT = torch.randint(0, 97, (3, 16)), torch.randint(0, 97, (3, 16))
    targets_BT[0, :4] = -100
    loss = model(inputs_BT, targets_BT=targets_BT)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expected = causal_lm_loss(model(inputs_BT), targets_BT)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()))
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_an_overridden_logits_method_is_not_bypassed_by_the_fused_path():
    plain, wrapped = _model_with(None), _model_with(LowRankHead)
    inputs_BT, targets_BT = torch.randint(0, 97, (2, 16)), torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        assert (wrapped(inputs_BT, targets_BT=targets_BT) - plain(inputs_BT, targets_BT=targets_BT)).abs() > 1e-3


def test_the_head_loss_under_no_grad_is_the_value_only():
    model = _model_with(LowRankHead)
    inputs_BT, targets_BT = torch.randint(0, 97, (2, 16)), torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        loss = model(inputs_BT, targets_BT=targets_BT)
        assert loss.grad_fn is None
        torch.testing.assert_close(loss, causal_lm_loss(model(inputs_BT), targets_BT))
