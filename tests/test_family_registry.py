"""The model family registry: every family registers itself, and a new family needs no edit of
any lmforge file.

The test family is a GPT-NeoX-like decoder (parallel attention and MLP branches, rotary
positions) with RMS norms and a tanh-GELU MLP: a `BlockSpec` no built-in family uses,
registered here, from the test, exactly as a file in lmforge/models/families/ would.
"""

from __future__ import annotations

import pytest
import torch

from lmforge.config import ModelConfig, PretrainConfig, build_config
from lmforge.errors import ConfigError
from lmforge.models import build_model, count_parameters, flops_per_token, registry
from lmforge.models.blocks import BlockSpec
from lmforge.models.sizing import approx_parameters
from lmforge.models.transformer import Transformer
from lmforge.train import checkpoint as ckpt

NEOX_BLOCKS = BlockSpec(norm="rmsnorm", mlp="gelu_tanh", positions="rope", residual="parallel")


def _neox_family() -> registry.Family:
    return registry.Family(
        name="neox-rms", summary="parallel attention/MLP, RoPE, RMSNorm", blocks=NEOX_BLOCKS,
        heads=("causal_lm",), build=lambda cfg, head: Transformer(cfg, NEOX_BLOCKS), default_task="causal_lm",
        generation="causal",
        presets={"neox-rms-tiny": {"family": "neox-rms", "vocab_size": 96, "max_seq_len": 32, "dim": 48,
                                   "num_layers": 2, "num_heads": 4, "bias": False, "tie_embeddings": False}})


@pytest.fixture
def neox(monkeypatch):
    """The registry with the test family added (and without it again after the test)."""
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry.families()))
    return registry.register_family(_neox_family())


def test_every_family_file_registers_its_family():
    assert set(registry.families()) >= {"gpt2", "llama", "mistral", "falcon", "bert", "t5"}
    for family in registry.families().values():
        assert family.heads and family.default_task and family.presets
        assert all(values["family"] == family.name for values in family.presets.values())
    assert registry.get_family("t5").generation == "seq2seq" and registry.get_family("bert").generation is None
    assert registry.get_family("bert").default_task == "masked_lm"
    with pytest.raises(ConfigError, match="model.family 'mamba' is unknown: choose one of .*gpt2"):
        registry.get_family("mamba")


def test_a_new_family_registered_outside_lmforge_builds_counts_and_trains(neox):
    cfg = build_config(ModelConfig, {"preset": "neox-rms-tiny"})  # the config loader knows it
    assert cfg.family == "neox-rms" and cfg.dim == 48
    torch.manual_seed(0)
    model = build_model(cfg)
    assert type(model) is Transformer and model.config.hidden_dim == 4 * 48  # the default width rule
    assert count_parameters(model) == count_parameters(cfg)
    assert 0.99 * count_parameters(cfg) <= approx_parameters(cfg) <= count_parameters(cfg)
    assert flops_per_token(cfg, 32) > 6 * count_parameters(cfg, include_embeddings=False)

    ids_BT = torch.randint(0, cfg.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = model(ids_BT[:, :-1], targets_BT=ids_BT[:, 1:])
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = model(ids_BT[:, :-1], targets_BT=ids_BT[:, 1:])
    assert torch.isfinite(before) and after < before


def test_a_new_family_checkpoint_round_trips(neox, tiny_run, tmp_path):
    from lmforge.tokenize import load_tokenizer

    cfg = build_config(ModelConfig, {"preset": "neox-rms-tiny",
                                     "vocab_size": load_tokenizer(tiny_run["tokenizer"]).vocab_size})
    model = build_model(cfg)
    saved = ckpt.save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"], {})
    loaded, _, _ = ckpt.load_checkpoint(saved)
    assert ckpt.read_checkpoint_info(saved).head.name == "causal_lm"
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[key]), key


def test_the_config_loader_refuses_an_unregistered_family_naming_the_registered_ones():
    with pytest.raises(ConfigError, match="config key 'model.family': expected a registered model family, "
                                          "got 'mamba' \\(registered: .*llama"):
        build_config(PretrainConfig, {"model": {"family": "mamba"}})


def test_registering_a_preset_another_family_owns_is_refused(neox):
    clash = registry.Family(name="clash", summary="", blocks=NEOX_BLOCKS, heads=("causal_lm",),
                            build=neox.build, default_task="causal_lm",
                            presets={"neox-rms-tiny": {"family": "clash"}})
    with pytest.raises(ValueError, match="preset 'neox-rms-tiny' of family clash is already family neox-rms's"):
        registry.register_family(clash)
