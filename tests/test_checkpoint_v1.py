"""Checkpoints written by the first checkpoint format (lmforge-checkpoint-v1) keep loading.

tests/golden/checkpoint_v1/ holds one run directory per family (and a BERT classifier whose
config.json carries the v1 ``head``/``id2label`` fields), each written by the v1 code together
with the logits that code computed (see its README.md), and resumable_run/, a v1 run to go on
with. The one loader builds the right head from each and gives the same logits; the v1 trainer
state loads, and the v1 run resumes to the losses the v1 code trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lmforge.errors import CheckpointError
from lmforge.train import checkpoint as ckpt

GOLDEN = Path(__file__).parent / "golden" / "checkpoint_v1"
FIXTURES = json.loads((GOLDEN / "fixtures.json").read_text())
HEADS = {"llama": "causal_lm", "gpt2": "causal_lm", "mistral": "causal_lm", "falcon": "causal_lm",
         "bert": "masked_lm", "t5": "seq2seq_lm", "bert_classifier": "sequence_classification"}


# The decoder start of the t5 fixture (README.md): id 0, as the v1 code was given it (T5's pad
# id; this tokenizer's id 0 is <s>).
T5_DECODER_START = 0


def _logits(model: torch.nn.Module, input_ids_BT: torch.Tensor) -> torch.Tensor:
    """What the v1 code computed (README.md): t5 encodes the ids after the first and decodes
    the start id followed by ids 1..7; the others read the ids."""
    if model.config.family == "t5":
        decoder_input_ids_BU = torch.cat([torch.tensor([[T5_DECODER_START]]), input_ids_BT[:, 1:8]], dim=1)
        return model(input_ids_BT[:, 1:], decoder_input_ids_BU)
    return model(input_ids_BT)


@pytest.mark.parametrize("name", FIXTURES)
def test_v1_checkpoint_loads_with_the_same_logits(name):
    expected = torch.load(GOLDEN / name / "expected_logits.pt", weights_only=True)
    model, _, ckpt_dir = ckpt.load_checkpoint(GOLDEN / FIXTURES[name])
    info = ckpt.read_checkpoint_info(ckpt_dir)
    assert info.format == ckpt.V1_FORMAT and info.step == 3 and info.head.name == HEADS[name]
    assert info.adapters == [] and info.base is None and info.task is None
    with torch.no_grad():
        logits = _logits(model, expected["input_ids"])
    assert logits.shape == expected["logits"].shape
    # The expected logits were computed on an Intel Xeon; another CPU's float kernels (AMD EPYC:
    # up to 1.9e-6 apart on logits of scale ~1) round differently, so not bit for bit.
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-5)


def test_v1_run_directory_resolves_to_its_checkpoint():
    model, _, ckpt_dir = ckpt.load_checkpoint(GOLDEN / "llama")
    assert ckpt_dir == GOLDEN / FIXTURES["llama"] and model.config.family == "llama"


def test_v1_sections_read_from_the_old_fields():
    classifier = ckpt.read_checkpoint_info(GOLDEN / FIXTURES["bert_classifier"])
    assert classifier.head.labels() == {0: "neg", 1: "neu", 2: "pos"}
    assert classifier.model.num_labels == 3
    llama = ckpt.read_checkpoint_info(GOLDEN / FIXTURES["llama"])
    assert llama.training.get("tokens_seen", 0) > 0 and llama.tokenizer.dir == ckpt.TOKENIZER_DIR


@pytest.mark.parametrize("name", FIXTURES)
def test_v1_trainer_state_loads(name):
    state = ckpt.load_trainer_state(GOLDEN / FIXTURES[name])
    assert state["step"] == 3 and set(ckpt.STATE_KEYS) <= set(state)


def test_v1_bert_without_head_field_is_read_off_the_weights(tmp_path):
    """A v1 BERT checkpoint names its head only sometimes: without the field, a classifier's
    weights still load as the classifier (and an MLM's as the MLM, the bert fixture)."""
    ckpt_dir = tmp_path / "classifier"
    shutil.copytree(GOLDEN / FIXTURES["bert_classifier"], ckpt_dir)
    config = json.loads((ckpt_dir / ckpt.CONFIG_FILE).read_text())
    del config["head"]
    (ckpt_dir / ckpt.CONFIG_FILE).write_text(json.dumps(config))
    model, _, _ = ckpt.load_checkpoint(ckpt_dir)
    assert type(model).__name__ == "BertForSequenceClassification"


def test_v1_head_field_contradicting_the_weights_is_one_line(tmp_path):
    ckpt_dir = tmp_path / "classifier"
    shutil.copytree(GOLDEN / FIXTURES["bert_classifier"], ckpt_dir)
    config = json.loads((ckpt_dir / ckpt.CONFIG_FILE).read_text())
    config["head"] = "token_classification"
    (ckpt_dir / ckpt.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="says head 'token_classification' but its weights are those of a "
                                              "sequence_classification model") as info:
        ckpt.load_checkpoint(ckpt_dir)
    assert "\n" not in str(info.value)


def test_a_run_written_by_the_v1_code_resumes_to_the_same_losses(tmp_path, monkeypatch):
    """resumable_run/ is a run the v1 code (debbcef) trained to step 3 and checkpointed there; it
    went on to step 6 and its losses and final val loss are expected.json. The current code
    resumes the step-3 checkpoint (model, optimiser, sampler, RNG from the v1 files) and must
    take the same steps: every loss equal (bit for bit on the CPU model the fixture was written on, an
    Intel Xeon; to 1e-6 relative elsewhere, where float kernels round differently)."""
    from lmforge.config import PretrainConfig, load_config
    from lmforge.train.loop import pretrain

    run = tmp_path / "resumable_run"
    shutil.copytree(GOLDEN / "resumable_run", run)
    monkeypatch.chdir(run)
    expected = json.loads((run / "expected.json").read_text())
    trained: list[int] = []  # the steps this process takes: 4, 5, 6 if it resumed (a fresh start
    # would give the same losses, so the losses alone cannot tell)
    summary = pretrain(load_config(PretrainConfig, run / "recipe.yaml"), on_step=lambda step, _: trained.append(step))
    assert trained == [4, 5, 6]
    records = [json.loads(line) for line in (run / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {str(r["step"]): r["loss"] for r in records if "loss" in r and not r.get("final")}
    assert losses == pytest.approx(expected["losses"], rel=1e-6, abs=0)
    assert summary["val_loss"] == pytest.approx(expected["final_val_loss"], rel=1e-6, abs=0)
    assert ckpt.read_checkpoint_info(run / "run" / "checkpoints" / "step_00000006").format == ckpt.FORMAT
