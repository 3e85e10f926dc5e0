"""Parameter groups, LAMB against hand computation, convergence and exact resume of every optimiser."""

import copy
import io
import math

import pytest
import torch
from torch import nn

from lmforge.config import OptimConfig
from lmforge.errors import ConfigError
from lmforge.train.optim import Lamb, build_optimizer, group_parameters

OPTIMISERS = ["sgd", "adam", "adamw", "lamb"]


class TinyLM(nn.Module):
    """Embeddings, a norm, a biased projection, an output head (tied or not) and a frozen layer."""

    def __init__(self, tie: bool) -> None:
        super().__init__()
        self.tok = nn.Embedding(10, 4)
        self.pos = nn.Embedding(8, 4)
        self.norm = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        if tie:
            self.head.weight = self.tok.weight
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, ids_BT: torch.Tensor) -> torch.Tensor:
        x_BTD = self.tok(ids_BT) + self.pos(torch.arange(ids_BT.size(1)))
        return self.head(self.proj(self.norm(x_BTD)))


def names(model: nn.Module) -> dict[str, list[str]]:
    return {k: [n for n, _ in v] for k, v in group_parameters(model).items()}


def test_decay_only_on_matrices_that_are_not_embeddings():
    assert names(TinyLM(tie=True)) == {
        "decay": ["proj.weight"],
        "embedding": ["tok.weight", "pos.weight"],  # the tied head is tok.weight: counted once, no decay
        "vector": ["norm.weight", "norm.bias", "proj.bias"],
    }
    assert names(TinyLM(tie=False))["decay"] == ["proj.weight", "head.weight"]


def test_optimizer_groups_carry_the_weight_decay_and_each_parameter_once():
    model = TinyLM(tie=True)
    opt = build_optimizer(model, OptimConfig(name="adamw", weight_decay=0.1))
    by_name = {g["name"]: g for g in opt.param_groups}
    assert {k: g["weight_decay"] for k, g in by_name.items()} == {"decay": 0.1, "embedding": 0.0, "vector": 0.0}
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == 6  # tok, pos, norm.w, norm.b, proj.w, proj.b (not frozen, not head)
    assert opt.defaults["foreach"] is True  # CPU path; fused=True is chosen for device_type="cuda"


def test_lamb_groups_skip_the_trust_ratio_only_for_vectors():
    opt = build_optimizer(TinyLM(tie=True), OptimConfig(name="lamb"))
    assert isinstance(opt, Lamb)
    assert {g["name"]: g["trust_ratio"] for g in opt.param_groups} == {
        "decay": True, "embedding": True, "vector": False}


def adam_direction(m: float, v: float, t: int, b1: float, b2: float, eps: float) -> float:
    return (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + eps)


def test_lamb_two_steps_match_hand_computation():
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-6, 0.01
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    opt = Lamb([w], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)

    # step 1, g = (1, -2): m_hat = g, v_hat = g^2, so r = g / (|g| + eps) ~ (1, -1)
    w.grad = torch.tensor([1.0, -2.0])
    opt.step()
    r = [1 / (1 + eps), -2 / (2 + eps)]
    u = [r[0] + wd * 3.0, r[1] + wd * 4.0]  # (1.03, -0.96)
    trust = 5.0 / math.hypot(*u)  # ||w|| = 5, ||u|| = 1.40801
    expected = [3.0 - lr * trust * u[0], 4.0 - lr * trust * u[1]]
    assert w.tolist() == pytest.approx(expected, abs=1e-6)
    assert w.tolist() == pytest.approx([2.63424, 4.34090], abs=1e-5)

    # step 2, g = (0.5, 0.5): moments carry over, bias corrections use t = 2
    w_prev = expected
    w.grad = torch.tensor([0.5, 0.5])
    opt.step()
    m = [b1 * (1 - b1) * 1.0 + (1 - b1) * 0.5, b1 * (1 - b1) * -2.0 + (1 - b1) * 0.5]
    v = [b2 * (1 - b2) * 1.0 + (1 - b2) * 0.25, b2 * (1 - b2) * 4.0 + (1 - b2) * 0.25]
    u = [adam_direction(m[i], v[i], 2, b1, b2, eps) + wd * w_prev[i] for i in range(2)]
    trust = math.hypot(*w_prev) / math.hypot(*u)
    expected = [w_prev[i] - lr * trust * u[i] for i in range(2)]
    assert w.tolist() == pytest.approx(expected, abs=1e-6)


def test_lamb_trust_ratio_edge_cases():
    zero_w = torch.zeros(3, requires_grad=True)  # ||w|| = 0: trust ratio 1, a plain Adam-direction step
    no_update = torch.tensor([1.0, 2.0], requires_grad=True)  # zero grad, no decay: ||u|| = 0, no NaN
    opt = Lamb([zero_w, no_update], lr=0.1, eps=1e-6, weight_decay=0.0)
    zero_w.grad = torch.tensor([2.0, 0.0, -1.0])
    no_update.grad = torch.zeros(2)
    opt.step()
    assert zero_w.tolist() == pytest.approx([-0.1 * 2 / (2 + 1e-6), 0.0, 0.1 * 1 / (1 + 1e-6)], abs=1e-7)
    assert no_update.tolist() == [1.0, 2.0]


def test_lamb_step_is_lr_times_the_weight_norm_and_off_switch_gives_the_raw_update():
    torch.manual_seed(0)
    w = torch.randn(5, 7, requires_grad=True)
    w0 = w.detach().clone()
    w.grad = torch.randn(5, 7)
    Lamb([w], lr=0.01, weight_decay=0.1).step()
    assert (w.detach() - w0).norm().item() == pytest.approx(0.01 * w0.norm().item(), rel=1e-5)

    v = torch.tensor([2.0, -3.0], requires_grad=True)
    v.grad = torch.tensor([4.0, 1.0])
    Lamb([{"params": [v], "trust_ratio": False}], lr=0.1, eps=0.0, weight_decay=0.5).step()
    assert v.tolist() == pytest.approx([2.0 - 0.1 * (1 + 1.0), -3.0 - 0.1 * (1 - 1.5)], abs=1e-6)


def regression_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(64, 1)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    return model, x, y


def train(model, opt, x, y, num_steps):
    losses = []
    for _ in range(num_steps):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", OPTIMISERS)
def test_every_optimiser_decreases_a_regression_loss(name):
    model, x, y = regression_problem()
    lr = {"sgd": 0.05, "adam": 0.02, "adamw": 0.02, "lamb": 0.02}[name]
    opt = build_optimizer(model, OptimConfig(name=name, lr=lr, weight_decay=0.01))
    losses = train(model, opt, x, y, 60)
    assert losses[-1] < 0.1 * losses[0], losses[::10]


@pytest.mark.parametrize("name", OPTIMISERS)
def test_state_dict_round_trip_gives_identical_next_steps(name):
    cfg = OptimConfig(name=name, lr=0.01, weight_decay=0.1)
    model, x, y = regression_problem()
    opt = build_optimizer(model, cfg)
    train(model, opt, x, y, 3)

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = copy.deepcopy(model)
    resumed.load_state_dict(saved["model"])
    resumed_opt = build_optimizer(resumed, cfg)
    resumed_opt.load_state_dict(saved["optimizer"])

    assert train(model, opt, x, y, 2) == train(resumed, resumed_opt, x, y, 2)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("field,value", [("lr", 0.0), ("beta2", 1.0), ("weight_decay", -0.1),
                                         ("min_lr_ratio", 1.5), ("name", "adagrad")])
def test_bad_values_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=f"optim.{field}"):
        build_optimizer(TinyLM(tie=True), OptimConfig(**{field: value}))


class Stack(nn.Module):
    """An embedding, three blocks in a ModuleList, a final norm and an untied head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10, bias=False)


def test_layer_wise_decay_scales_by_hand():
    """L = 3 blocks, decay 0.5: depth d trains at 0.5 ** (L + 1 - d); embeddings depth 0, blocks 1..3,
    the output end (final norm, head) depth 4."""
    from lmforge.train.optim import lr_scales

    scales = lr_scales(Stack(), layer_decay=0.5)
    assert scales == {"embed.weight": 0.0625,
                      "blocks.0.weight": 0.125, "blocks.0.bias": 0.125,
                      "blocks.1.weight": 0.25, "blocks.1.bias": 0.25,
                      "blocks.2.weight": 0.5, "blocks.2.bias": 0.5,
                      "norm.weight": 1.0, "norm.bias": 1.0, "head.weight": 1.0}
    with_module = lr_scales(Stack(), layer_decay=0.5, module_scales={"head.*": 10.0, "blocks.2.*": 2.0})
    assert with_module["head.weight"] == 10.0 and with_module["blocks.2.weight"] == 1.0
    assert with_module["blocks.1.weight"] == 0.25
    assert set(lr_scales(Stack()).values()) == {1.0}


def test_groups_carry_the_scales_and_the_learning_rate_follows_them():
    from lmforge.train.step import set_learning_rate

    model = Stack()
    opt = build_optimizer(model, OptimConfig(layer_lr_decay=0.5, module_lr_scales={"head.*": 3.0}))
    set_learning_rate(opt, 0.01)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    by_name = dict(model.named_parameters())
    assert lr_of[id(by_name["embed.weight"])] == pytest.approx(0.01 * 0.0625)
    assert lr_of[id(by_name["blocks.0.weight"])] == pytest.approx(0.01 * 0.125)
    assert lr_of[id(by_name["blocks.2.bias"])] == pytest.approx(0.01 * 0.5)
    assert lr_of[id(by_name["head.weight"])] == pytest.approx(0.03)
    assert lr_of[id(by_name["norm.weight"])] == pytest.approx(0.01)
    decay = [g for g in opt.param_groups if g["name"] == "decay"]
    assert [g["lr_scale"] for g in decay] == [0.125, 0.25, 0.5, 3.0]  # one group per scale, weight decay kept
    assert all(g["weight_decay"] == OptimConfig().weight_decay for g in decay)
    plain = build_optimizer(TinyLM(tie=True), OptimConfig())
    assert [(g["name"], g["lr_scale"]) for g in plain.param_groups] == [("decay", 1.0), ("embedding", 1.0),
                                                                        ("vector", 1.0)]


def test_module_lr_scales_are_checked_at_load():
    from lmforge import config as C

    with pytest.raises(ConfigError, match=r"^config key 'optim.module_lr_scales.output\.\*': expected a positive "
                                          r"finite number, got -1$"):
        C.load_config(C.PretrainConfig, None, {"optim.module_lr_scales": "{'output.*': -1}"})
    with pytest.raises(ConfigError, match=r"^config key 'optim.layer_lr_decay': expected a number in \(0, 1\]"):
        C.load_config(C.PretrainConfig, None, {"optim.layer_lr_decay": "1.5"})
