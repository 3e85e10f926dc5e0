"""Checkpoint format v2: config.json in typed sections, one loader that builds the declared head."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError
from lmforge.models import build_model
from lmforge.tokenize import load_tokenizer
from lmforge.train import checkpoint as ckpt


@pytest.fixture
def saved(tiny_run, tmp_path):
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset="bert-tiny", vocab_size=vocab_size, num_labels=2), "token_classification")
    path = ckpt.save_checkpoint(tmp_path / "run", 5, model, model.config, tiny_run["tokenizer"], {},
                                task={"name": "token_classification", "options": {"label_field": "tags"}},
                                training={"tokens_seen": 640}, id2label={0: "O", 1: "NAME"})
    return model, path


def _edit(path, **sections):
    config = json.loads((path / ckpt.CONFIG_FILE).read_text())
    config.update(sections)
    (path / ckpt.CONFIG_FILE).write_text(json.dumps(config))


def test_sections_are_written_and_read_back_typed(saved, tiny_run):
    model, path = saved
    raw = json.loads((path / ckpt.CONFIG_FILE).read_text())
    assert raw["format"] == "lmforge-checkpoint-v2" and raw["step"] == 5
    assert set(raw) == {"format", "step", "model", "head", "task", "tokenizer", "adapters", "base", "quantization",
                        "sharding", "training", "imported_from"}
    info = ckpt.read_checkpoint_info(path)
    tokenizer = load_tokenizer(tiny_run["tokenizer"])
    assert info.model == dataclasses.replace(model.config, preset="") and info.head.name == "token_classification"
    assert info.head.labels() == {0: "O", 1: "NAME"}
    assert (info.task.name, info.task.options) == ("token_classification", {"label_field": "tags"})
    assert (info.tokenizer.dir, info.tokenizer.kind, info.tokenizer.fingerprint) == (
        ckpt.TOKENIZER_DIR, tokenizer.kind, tokenizer.fingerprint())
    assert info.training == {"tokens_seen": 640} and info.adapters == [] and info.unapplied_sections() == []


def test_the_one_loader_builds_the_declared_head(saved):
    model, path = saved
    loaded, _, _ = ckpt.load_checkpoint(path)
    assert type(loaded) is type(model)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[key]), key


def test_the_head_defaults_to_what_the_model_is_and_a_wrong_one_is_refused(tiny_run, tmp_path):
    model = build_model(ModelConfig(preset="llama-tiny", vocab_size=load_tokenizer(tiny_run["tokenizer"]).vocab_size))
    path = ckpt.save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"], {})
    assert ckpt.read_checkpoint_info(path).head.name == "causal_lm"
    assert ckpt.read_checkpoint_info(path).task is None
    with pytest.raises(CheckpointError, match="told head 'masked_lm' but the model is a causal_lm model"):
        ckpt.save_checkpoint(tmp_path / "run", 2, model, model.config, tiny_run["tokenizer"], {}, head="masked_lm")


@pytest.mark.parametrize("section", ["quantization", "sharding"])
def test_sections_this_version_cannot_apply_are_one_line(saved, section):
    _, path = saved
    _edit(path, **{section: {"kind": "x"}})
    with pytest.raises(CheckpointError, match=f"declares {section}, which this version of lmforge cannot apply "
                                              "yet") as info:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_adapters_without_a_base_are_one_line(saved):
    _, path = saved
    _edit(path, adapters=[{"name": "lora", "options": {}}])
    with pytest.raises(CheckpointError, match="declares adapters but no base in its config.json: an adapter "
                                              "checkpoint names both") as info:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("sections,message", [
    ({"colour": "blue"}, "unknown config key 'colour'"),
    ({"head": {"name": "causal_lm", "labels": {}}}, "unknown config key 'head.labels'"),
    ({"head": {"name": "lm_head"}}, "has no head 'lm_head'"),
    ({"task": {"name": "x", "options": [1]}}, "config key 'task': expected TaskSection or null"),
    ({"tokenizer": {"dir": "../elsewhere"}}, "config key 'tokenizer.dir': expected a directory inside"),
    ({"format": "lmforge-checkpoint-v9"}, "config key 'format'"),
    ({"step": "five"}, "config key 'step': expected an integer"),
])
def test_a_wrong_section_is_one_line(saved, sections, message):
    _, path = saved
    _edit(path, **sections)
    with pytest.raises(CheckpointError, match=message) as info:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
