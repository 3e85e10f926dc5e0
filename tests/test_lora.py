"""LoRA adapters (`lmforge.finetune.adapters`): no-op at init, merge/unmerge, rsLoRA scale,
freezing, training, target matching errors, adapter state and the base-model guard."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import randomise

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError
from lmforge.finetune.adapters import (LoRALinear, LoraOptions, adapter_options, adapter_spec, adapter_state_dict,
                                       apply_adapter, base_fingerprint, check_base_fingerprint,
                                       load_adapter_state_dict, merge_adapters, registered_adapters,
                                       remove_adapters, unmerge_adapters)
from lmforge.generate import generate
from lmforge.models import build_model

VOCAB = 64


def _llama(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomise(build_model(ModelConfig(preset="llama-tiny", vocab_size=VOCAB)), seed=seed, matrix_std=0.05,
                     vector_std=0.1)


def _ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(seed))


def _randomise_b(model: torch.nn.Module, std: float = 0.05) -> None:
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.weight.normal_(0.0, std)


def test_registry_lists_lora_with_typed_options():
    assert "lora" in registered_adapters()
    options = adapter_options(adapter_spec("lora"), {"rank": 4, "targets": ["q_proj"]})
    assert isinstance(options, LoraOptions) and options.rank == 4 and options.alpha == 8.0
    with pytest.raises(ConfigError, match="config key 'adapter.name': unknown adapter 'lorra'"):
        adapter_spec("lorra")
    with pytest.raises(ConfigError, match="unknown config key 'adapter.options.rnk'"):
        adapter_options(adapter_spec("lora"), {"rnk": 4})
    with pytest.raises(ConfigError, match="'adapter.options.rank'"):
        adapter_options(adapter_spec("lora"), {"rank": 0})
    with pytest.raises(ConfigError, match="'adapter.options.quantize_base'"):
        adapter_options(adapter_spec("lora"), {"quantize_base": "int3"})


def test_lora_is_a_no_op_at_init_and_wraps_the_default_targets():
    model = _llama()
    ids = _ids()
    with torch.no_grad():
        before = model(ids)
        wrapped = apply_adapter(model, "lora", {})
        after = model(ids)
    assert wrapped == ["layers.0.attn.q_proj", "layers.0.attn.v_proj", "layers.1.attn.q_proj", "layers.1.attn.v_proj"]
    assert torch.equal(before, after)
    module = model.get_submodule("layers.0.attn.q_proj")
    assert module.scale == 1.0 and module.lora_A.weight.shape == (8, 64) and module.lora_B.weight.shape == (64, 8)
    assert torch.count_nonzero(module.lora_B.weight) == 0
    # A is nn.Linear's Kaiming-uniform(a=√5): bound = 1/sqrt(fan_in) = 1/8
    assert module.lora_A.weight.abs().max() <= 1 / 8 and module.lora_A.weight.std() > 0.05


def test_forward_is_base_plus_scaled_low_rank_update_by_hand():
    model = _llama()
    apply_adapter(model, "lora", {"rank": 2, "alpha": 6.0, "targets": ["layers.0.attn.q_proj"]})
    _randomise_b(model)
    module = model.get_submodule("layers.0.attn.q_proj")
    x = torch.randn(3, 64)
    expected = x @ module.base.weight.T + 3.0 * (x @ module.lora_A.weight.T) @ module.lora_B.weight.T
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-6)


def test_rslora_scale_is_alpha_over_sqrt_rank():
    model = _llama()
    apply_adapter(model, "lora", {"rank": 16, "alpha": 8.0, "rslora": True})
    assert model.get_submodule("layers.1.attn.v_proj").scale == pytest.approx(8.0 / 4.0)
    plain = _llama()
    apply_adapter(plain, "lora", {"rank": 16, "alpha": 8.0})
    assert plain.get_submodule("layers.1.attn.v_proj").scale == pytest.approx(0.5)


def test_merge_and_unmerge_give_the_same_logits_and_restore_the_base():
    model = _llama().eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    apply_adapter(model, "lora", {"rank": 4, "alpha": 8.0, "targets": ["q_proj", "v_proj", "gate_proj", "out_proj"]})
    _randomise_b(model)
    ids = _ids()
    with torch.no_grad():
        unmerged = model(ids)
        assert not torch.allclose(unmerged, _llama()(ids), atol=1e-3)  # the adapter does something
        assert merge_adapters(model) == 10
        merged = model(ids)
        torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-4)
        unmerge_adapters(model)
        torch.testing.assert_close(model(ids), unmerged, rtol=0, atol=1e-5)
    weight = model.get_submodule("layers.0.attn.q_proj").base.weight
    torch.testing.assert_close(weight, original["layers.0.attn.q_proj.weight"], rtol=0, atol=1e-6)
    # remove_adapters(merge=True) puts plain Linears back under the original names
    remove_adapters(model)
    assert set(model.state_dict()) == set(original)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), unmerged, rtol=0, atol=1e-4)


def test_only_adapter_params_train_and_optimizer_steps_change_only_them():
    model = _llama()
    apply_adapter(model, "lora", {"rank": 4, "train_modules": ["norm"]})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"layers.{i}.attn.{p}.lora_{ab}.weight" for i in (0, 1) for p in ("q_proj", "v_proj")
                         for ab in "AB"} | {"norm.weight"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = _ids()
    for _ in range(3):
        loss = model(ids[:, :-1], targets_BT=ids[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == trainable
    assert set(adapter_state_dict(model)) == trainable


def test_lora_training_lowers_the_loss_on_a_toy_task():
    """Memorise a fixed batch: 30 AdamW steps on rank-4 adapters of all block linears."""
    model = _llama()
    apply_adapter(model, "lora", {"rank": 4, "alpha": 8.0, "targets": ["*_proj"]})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    ids = _ids(5)
    losses = []
    for _ in range(30):
        loss = model(ids[:, :-1], targets_BT=ids[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_targets_matching_nothing_name_real_modules():
    with pytest.raises(ConfigError, match=r"'adapter.options.targets': query match no linear module.*"
                                          r"layers\.0\.attn\.q_proj"):
        apply_adapter(_llama(), "lora", {"targets": ["query"]})
    with pytest.raises(ConfigError, match="'adapter.options.train_modules': classifier match no module"):
        apply_adapter(_llama(), "lora", {"train_modules": ["classifier"]})


def test_suffix_and_glob_matching_follow_peft():
    model = _llama()
    assert apply_adapter(model, "lora", {"targets": ["mlp.out_proj"]}) == ["layers.0.mlp.out_proj",
                                                                          "layers.1.mlp.out_proj"]
    # "proj" is not a dotted suffix of "q_proj": no partial-word matches
    with pytest.raises(ConfigError, match="match no linear"):
        apply_adapter(_llama(), "lora", {"targets": ["proj"]})
    wrapped = apply_adapter(_llama(), "lora", {"targets": ["layers.1.*"]})
    assert len(wrapped) == 7 and all(name.startswith("layers.1.") for name in wrapped)


def test_the_output_head_is_never_wrapped():
    with pytest.raises(ConfigError, match="names the output head 'output'.*train_modules"):
        apply_adapter(_llama(), "lora", {"targets": ["output"]})
    model = _llama()
    wrapped = apply_adapter(model, "lora", {"targets": ["*"]})  # a glob over everything leaves it out
    assert "output" not in wrapped and len(wrapped) == 14
    assert type(model.output).__name__ == "LMHead"


def test_applying_twice_and_merging_an_nf4_base_are_refused():
    model = _llama()
    apply_adapter(model, "lora", {})
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        apply_adapter(model, "lora", {})
    qmodel = _llama()
    apply_adapter(qmodel, "lora", {"quantize_base": "nf4"})
    with pytest.raises(ConfigError, match="cannot merge a LoRA adapter into an NF4-quantised base"):
        merge_adapters(qmodel)


def test_generation_with_a_lora_model_matches_the_merged_model():
    """fast_decoding swaps exact nn.Linears only: a LoRALinear stays and its update is still applied."""
    model = _llama().eval()
    apply_adapter(model, "lora", {"rank": 4, "targets": ["q_proj", "v_proj", "up_proj"]})
    _randomise_b(model, std=0.3)
    prompt = _ids()[:, :4]
    adapted = torch.stack(list(generate(model, prompt, max_new_tokens=8, temperature=0)), dim=1)
    merge_adapters(model)
    merged = torch.stack(list(generate(model, prompt, max_new_tokens=8, temperature=0)), dim=1)
    remove_adapters(model)
    plain = torch.stack(list(generate(_llama().eval(), prompt, max_new_tokens=8, temperature=0)), dim=1)
    assert torch.equal(adapted, merged)
    assert not torch.equal(adapted, plain)  # the adapter changed what is generated


def test_adapter_state_round_trips_and_wrong_shapes_or_base_are_refused():
    model = _llama()
    apply_adapter(model, "lora", {"rank": 4})
    _randomise_b(model)
    state = adapter_state_dict(model)
    fingerprint = base_fingerprint(model)
    other = _llama()
    assert base_fingerprint(other) == fingerprint  # no train_modules: same before and after applying
    apply_adapter(other, "lora", {"rank": 4})
    check_base_fingerprint(other, fingerprint)
    load_adapter_state_dict(other, state)
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(other(ids), model(ids), rtol=0, atol=0)

    different = _llama(seed=7)
    apply_adapter(different, "lora", {"rank": 4})
    with pytest.raises(CheckpointError, match="trained on another base model"):
        check_base_fingerprint(different, fingerprint)
    rank8 = _llama()
    apply_adapter(rank8, "lora", {"rank": 8})
    with pytest.raises(CheckpointError, match=r"has shape \(4, 64\), this model's is \(8, 64\)"):
        load_adapter_state_dict(rank8, state)
    wider = build_model(ModelConfig(preset="llama-tiny", vocab_size=VOCAB, dim=128, num_heads=4))
    apply_adapter(wider, "lora", {"rank": 4})
    with pytest.raises(CheckpointError, match="another base model or with another rank"):
        load_adapter_state_dict(wider, state)
    fewer = _llama()
    apply_adapter(fewer, "lora", {"rank": 4, "targets": ["q_proj"]})
    with pytest.raises(CheckpointError, match="which this model has no trainable tensor for"):
        load_adapter_state_dict(fewer, state)


def test_dropout_applies_in_training_only():
    model = _llama()
    apply_adapter(model, "lora", {"rank": 4, "dropout": 0.5, "targets": ["layers.0.attn.q_proj"]})
    _randomise_b(model)
    module = model.get_submodule("layers.0.attn.q_proj")
    x = torch.randn(4, 64)
    module.eval()
    assert torch.equal(module(x), module(x))
    module.train()
    torch.manual_seed(0)
    first = module(x)
    assert not torch.equal(first, module(x))
    assert math.isclose(module.scale, 8.0 / 4)
