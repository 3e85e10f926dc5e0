"""Config loading: YAML + dotted overrides, one-line errors, saved config round-trips."""

from pathlib import Path

import pytest

from lmforge import config as C
from lmforge.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_then_yaml_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 0.01\n  name: lamb\ntrain:\n  max_steps: 7\n")
    cfg = C.load_config(C.PretrainConfig, recipe, {"optim.lr": "3e-4", "train.precision": "bf16"})
    assert cfg.optim.lr == pytest.approx(3e-4)  # override beats YAML
    assert cfg.optim.name == "lamb"  # YAML beats default
    assert cfg.train.max_steps == 7
    assert cfg.train.precision == "bf16"
    assert cfg.train.batch_size == C.TrainConfig().batch_size  # default kept


@pytest.mark.parametrize("overrides, fragment", [
    ({"optim.lrr": "1"}, "unknown config key 'optim.lrr'"),
    ({"optim.name": "adamax"}, "config key 'optim.name': expected one of 'sgd', 'adam', 'adamw', 'lamb'"),
    ({"train.max_steps": "ten"}, "config key 'train.max_steps': expected an integer, got 'ten'"),
    ({"train.max_steps": "1.5"}, "config key 'train.max_steps': expected an integer"),
    ({"train.compile": "3"}, "config key 'train.compile': expected true or false"),
    ({"nope.x": "1"}, "unknown config key 'nope'"),
])
def test_bad_keys_and_values_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        C.load_config(C.PretrainConfig, None, overrides)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        C.load_config(C.PretrainConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.load_config(C.PretrainConfig, bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        C.load_config(C.PretrainConfig, scalar)


def test_saved_config_loads_back_identically(tmp_path):
    cfg = C.load_config(C.PretrainConfig, None, {"model.dim": "128", "optim.schedule": "wsd"})
    C.save_config(cfg, tmp_path / "config.yaml")
    assert C.load_config(C.PretrainConfig, tmp_path / "config.yaml") == cfg


def test_list_fields_accept_scalars_and_lists():
    cfg = C.load_config(C.GenerateConfig, None, {"stop": ["\n\n", "def "]})
    assert cfg.stop == ["\n\n", "def "]
    cfg = C.load_config(C.SourceConfig, None, {"paths": "data/*.txt"})
    assert cfg.paths == ["data/*.txt"]


def recipe_class(recipe) -> type:
    """A training recipe's config class: the base models of the fine-tuning recipes are pretraining ones."""
    finetune = recipe.name.startswith("finetune-") and not recipe.name.startswith("finetune-base-")
    return C.FinetuneConfig if finetune else C.PretrainConfig


@pytest.mark.parametrize("recipe", sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith(("data-", "classifier-"))),
                         ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    from lmforge.sweep import SweepConfig

    if recipe.name.startswith("sweep-"):
        sweep = C.load_config(SweepConfig, recipe)
        assert sweep.space and sweep.trials >= 1
        return
    cfg = C.load_config(recipe_class(recipe), recipe)
    assert cfg.train.max_steps or cfg.train.max_tokens or cfg.train.max_seconds


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("data-*.yaml")), ids=lambda p: p.name)
def test_every_data_pipeline_loads_with_valid_steps(recipe):
    from lmforge.data.pipeline.plan import build_steps

    cfg = C.load_config(C.DataRunConfig, recipe)
    steps = build_steps(cfg.steps)
    assert [s.name for s in steps] == [entry["step"] for entry in cfg.steps]


def test_every_field_has_help():
    for cls in (C.PrepareConfig, C.TokenizerConfig, C.EncodeConfig, C.PretrainConfig,
                C.EvaluateConfig, C.GenerateConfig, C.QuickstartConfig, C.ConvertConfig, C.DataRunConfig,
                C.DataReportConfig, C.ClassifierTrainConfig):
        for dotted, _tp, _default, help_text in C.iter_fields(cls):
            assert help_text, f"{cls.__name__}.{dotted} has no help"


def test_model_preset_expands_under_user_values():
    # max_seq_len 256 equals the dataclass default but was given explicitly: it must beat the preset
    cfg = C.load_config(C.PretrainConfig, None, {"model.preset": "gpt2-124m", "model.max_seq_len": "256"})
    assert cfg.model.max_seq_len == 256
    assert cfg.model.dim == 768 and cfg.model.family == "gpt2" and cfg.model.bias is True
    assert cfg.model.preset == ""  # written out: the saved config is self-contained
    with pytest.raises(ConfigError, match="unknown model preset 'gpt9'"):
        C.load_config(C.PretrainConfig, None, {"model.preset": "gpt9"})


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("classifier-*.yaml")), ids=lambda p: p.name)
def test_every_classifier_recipe_loads(recipe):
    cfg = C.load_config(C.ClassifierTrainConfig, recipe)
    assert 0 < cfg.val_fraction < 1 and cfg.num_buckets > 0


def test_every_data_step_option_has_help():
    import dataclasses

    from lmforge.data.steps import registered_steps

    steps = registered_steps()
    assert len(steps) >= 14
    for name, spec in steps.items():
        for f in dataclasses.fields(spec.options_cls):
            assert f.metadata.get("help"), f"data step {name}: option {f.name} has no help"


def test_a_moved_key_says_where_it_went(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("train:\n  fused_loss: false\n")
    with pytest.raises(ConfigError, match=r"^config key 'train.fused_loss' has moved: set task.options.fused_loss"):
        C.load_config(C.PretrainConfig, recipe)
