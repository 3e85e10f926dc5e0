"""`lmforge finetune`: a pretrained source in, frozen parts, adapters (LoRA, QLoRA) and their checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_pretrain_config
from lmforge import config as C
from lmforge.errors import CheckpointError, ConfigError
from lmforge.finetune.run import finetune
from lmforge.train import checkpoint as ckpt
from lmforge.train.loop import pretrain
from run_safety_helpers import run_cli


@pytest.fixture(scope="module")
def source(tiny_run, tmp_path_factory):
    """A tiny llama pretrained for 8 steps: the model every test here fine-tunes."""
    run = tmp_path_factory.mktemp("source") / "run"
    pretrain(tiny_pretrain_config(tiny_run, run))
    return run


def finetune_config(tiny_run, source, run_dir, **overrides) -> C.FinetuneConfig:
    values = {"train.init_from": str(source), "train.tokenizer_dir": "", "train.shards_dir": str(tiny_run["shards"]),
              "train.run_dir": str(run_dir), "train.seq_len": 32, "train.batch_size": 4, "train.max_steps": 4,
              "train.eval_interval": 2, "train.eval_batches": 2, "train.log_interval": 1, "train.device": "cpu",
              "train.seed": 0, "optim.lr": 1e-2, "optim.warmup_steps": 0}
    values.update(overrides)
    return C.load_config(C.FinetuneConfig, None, values)


def _logits(model, tokens_BT):
    with torch.no_grad():
        return model(tokens_BT)


TOKENS_BT = torch.arange(2, 34).reshape(2, 16)


def test_finetune_needs_a_source(capsys):
    status = run_cli(["finetune", "--train.max_steps", "1"], capsys)
    assert status[0] == 2 and status[1] == ["lmforge finetune: error: config key 'train.init_from': fine-tuning starts "
                                            "from a pretrained model: pass an lmforge checkpoint or run directory, or "
                                            "an HF model directory"]


def test_continued_pretraining_takes_the_sources_tokenizer_and_lowers_the_loss(tiny_run, source, tmp_path):
    summary = finetune(finetune_config(tiny_run, source, tmp_path / "ft", **{"train.max_steps": 6}))
    before = json.loads((source / "summary.json").read_text())["val_loss"]
    assert summary["val_loss"] < before
    info = ckpt.read_checkpoint_info(ckpt.latest_checkpoint(tmp_path / "ft"))
    source_info = ckpt.read_checkpoint_info(ckpt.latest_checkpoint(source))
    assert info.tokenizer.fingerprint == source_info.tokenizer.fingerprint
    assert (info.task.name, info.head.name) == ("causal_lm", "causal_lm")


def test_frozen_parameters_keep_the_sources_values(tiny_run, source, tmp_path):
    finetune(finetune_config(tiny_run, source, tmp_path / "ft",
                             **{"optim.freeze": ["tok_embeddings.*", "layers.0.*"]}))
    before, _, _ = ckpt.load_checkpoint(source)
    after, _, _ = ckpt.load_checkpoint(tmp_path / "ft")
    old, new = before.state_dict(), after.state_dict()
    frozen = [name for name in old if name.startswith(("tok_embeddings.", "layers.0."))]
    assert frozen and all(torch.equal(old[name], new[name]) for name in frozen)
    assert not torch.equal(old["layers.1.attn.q_proj.weight"], new["layers.1.attn.q_proj.weight"])


def test_a_freeze_pattern_that_matches_nothing_is_one_line(tiny_run, source, tmp_path):
    with pytest.raises(ConfigError, match=r"^config key 'optim.freeze': pattern 'encoder.\*' matches no parameter; "
                                          r"names look like tok_embeddings.weight, "):
        finetune(finetune_config(tiny_run, source, tmp_path / "ft", **{"optim.freeze": ["encoder.*"]}))


def test_a_lora_run_saves_only_the_adapter_and_loads_back_onto_its_base(tiny_run, source, tmp_path):
    run = tmp_path / "lora"
    summary = finetune(finetune_config(tiny_run, source, run, **{
        "adapter.name": "lora", "adapter.options": {"rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
        "adapter.save_merged": True}))
    saved = ckpt.latest_checkpoint(run)
    assert (saved / ckpt.ADAPTER_FILE).is_file() and not (saved / ckpt.MODEL_FILE).exists()
    info = ckpt.read_checkpoint_info(saved)
    assert info.adapters[0]["name"] == "lora" and info.adapters[0]["options"]["rank"] == 4
    assert info.base["path"] == str(source.resolve()) and info.base["fingerprint"].startswith("sha256:")
    from safetensors.torch import load_file

    names = set(load_file(str(saved / ckpt.ADAPTER_FILE)))
    assert names and all(".lora_" in name for name in names)  # 2 layers x q, v x A, B
    assert len(names) == 8

    adapted, _, _ = ckpt.load_checkpoint(saved)
    base, _, _ = ckpt.load_checkpoint(source)
    merged, _, _ = ckpt.load_checkpoint(summary["merged_checkpoint"])
    assert not torch.allclose(_logits(adapted, TOKENS_BT), _logits(base, TOKENS_BT), atol=1e-4)  # it learned
    torch.testing.assert_close(_logits(merged, TOKENS_BT), _logits(adapted, TOKENS_BT), rtol=0, atol=1e-4)


def test_a_lora_run_resumes_to_the_same_losses(tiny_run, source, tmp_path):
    lora = {"adapter.name": "lora", "adapter.options": {"rank": 4}}
    straight = []
    finetune(finetune_config(tiny_run, source, tmp_path / "straight", **{**lora, "train.max_steps": 6}),
             on_step=lambda step, record: straight.append(record["loss"]))
    class Killed(Exception):
        pass

    def kill_after_step_3(step, record):
        if step == 3:
            raise Killed  # after the step-3 checkpoint, as a kill would

    cfg = finetune_config(tiny_run, source, tmp_path / "resumed",
                          **{**lora, "train.max_steps": 6, "train.checkpoint_interval": 3})
    with pytest.raises(Killed):
        finetune(cfg, on_step=kill_after_step_3)
    resumed = []
    finetune(cfg, on_step=lambda step, record: resumed.append(record["loss"]))
    assert len(resumed) == 3 and resumed == pytest.approx(straight[3:], rel=1e-6)


def test_an_adapter_on_a_changed_base_is_refused(tiny_run, source, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(source, base)
    run = tmp_path / "lora"
    finetune(finetune_config(tiny_run, base, run, **{"adapter.name": "lora"}))
    newest = ckpt.latest_checkpoint(base)
    model, tokenizer, _ = ckpt.load_checkpoint(newest)
    with torch.no_grad():
        model.layers[0].attn.k_proj.weight.add_(0.01)
    shutil.rmtree(base / "checkpoints")
    ckpt.save_checkpoint(base, 8, model, model.config, tokenizer, {}, head="causal_lm")
    with pytest.raises(CheckpointError, match="was trained on another base model"):
        ckpt.load_checkpoint(run)


def test_qlora_trains_on_an_nf4_base(tiny_run, source, tmp_path):
    run = tmp_path / "qlora"
    summary = finetune(finetune_config(tiny_run, source, run, **{
        "adapter.name": "lora", "adapter.options": {"rank": 4, "quantize_base": "nf4", "quant_block_size": 32}}))
    assert summary["val_loss"] < json.loads((source / "summary.json").read_text())["val_loss"] + 0.05
    model, _, _ = ckpt.load_checkpoint(run)
    assert any(type(m).__name__ == "NF4Linear" for m in model.modules())
    assert torch.isfinite(_logits(model, TOKENS_BT)).all()


def test_lmforge_adapters_lists_lora_with_its_options(capsys):
    from lmforge.cli import main

    assert main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lora  ") and "rank" in out and "quantize_base" in out


def test_a_lora_checkpoint_exports_as_a_peft_adapter_that_peft_loads_with_the_same_logits(tiny_run, source, tmp_path,
                                                                                          capsys):
    """`lmforge finetune` (LoRA) -> `lmforge convert --to peft`, and the base -> `--to hf`: peft puts
    the adapter on the HF base and computes our logits (fp32)."""
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    run = tmp_path / "lora"
    finetune(finetune_config(tiny_run, source, run, **{
        "adapter.name": "lora", "adapter.options": {"rank": 4, "alpha": 16, "targets": ["q_proj", "v_proj", "out_proj"]}}))
    status, errors, _ = run_cli(["convert", run, "--to", "peft", "--out_dir", tmp_path / "peft"], capsys)
    assert status == 0, errors
    assert sorted(p.name for p in (tmp_path / "peft").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    status, errors, _ = run_cli(["convert", run, "--to", "hf", "--out_dir", tmp_path / "nope"], capsys)
    assert status == 2 and "is an adapter checkpoint (only the adapter's weights): export it with --to peft" in errors[0]
    assert run_cli(["convert", source, "--to", "hf", "--out_dir", tmp_path / "hf_base"], capsys)[0] == 0

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf_base", dtype=torch.float32)
    peft_model = peft.PeftModel.from_pretrained(hf_model, tmp_path / "peft").eval()
    ours, _, _ = ckpt.load_checkpoint(run)
    with torch.no_grad():
        theirs = peft_model(input_ids=TOKENS_BT).logits
    torch.testing.assert_close(theirs, _logits(ours, TOKENS_BT), rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def bert_source(tiny_run, tmp_path_factory):
    """bert-tiny pretrained by masked LM for 6 steps: a base without a classifier."""
    run = tmp_path_factory.mktemp("bert") / "run"
    pretrain(tiny_pretrain_config(tiny_run, run, max_steps=6, **{"model.preset": "bert-tiny"}))
    return run


def _labelled(path, count, seed):
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["digits", "letters"])
        alphabet = "0123456789" if label == "digits" else "abcdefghij"
        rows.append({"text": " ".join("".join(rng.choice(alphabet) for _ in range(3)) for _ in range(4)),
                     "label": label})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("adapter", ["", "lora"])
def test_a_classifier_on_a_masked_lm_base_learns_and_saves_its_labels(tiny_run, bert_source, tmp_path, adapter,
                                                                       capsys):
    """The MLM checkpoint's trunk loads, the classifier (and pooler) start fresh and train (beside the
    adapter with LoRA: added to train_modules), and the checkpoint names the labels."""
    options = {"train_path": _labelled(tmp_path / "train.jsonl", 64, 0), "val_path": _labelled(tmp_path / "val.jsonl", 32, 1)}
    run = tmp_path / "cls"
    summary = finetune(finetune_config(tiny_run, bert_source, run, **{
        "task.name": "sequence_classification", "task.options": options, "train.max_steps": 24,
        "train.batch_size": 8, "optim.lr": 1e-2, "adapter.name": adapter, "adapter.options": {"rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj", "out_proj", "in_proj"]}
        if adapter else {}}))
    assert "(new: [pooler (x2), classifier (x2)], dropped: [head_dense (x2), head_norm (x2), output (x2)])" in \
        capsys.readouterr().err
    info = ckpt.read_checkpoint_info(ckpt.latest_checkpoint(run))
    assert info.head.name == "sequence_classification" and info.head.labels() == {0: "digits", 1: "letters"}
    model, _, _ = ckpt.load_checkpoint(run)
    assert type(model).__name__ == "BertForSequenceClassification"
    if not adapter:
        assert summary["val_accuracy"] >= 0.9  # the whole model adapts
        return
    # A 6-step MLM base is too weak for a frozen trunk to separate the classes in 24 steps (a linear
    # probe stays at chance too), so here: the classifier was added to train_modules and trained.
    assert set(info.adapters[0]["options"]["train_modules"]) == {"pooler", "classifier"}
    assert summary["trainable_params"] < summary["num_params"] / 4
    torch.manual_seed(0)  # train.seed: the set-up seeds just before it builds the model
    fresh = type(model)(model.config)
    assert not torch.equal(fresh.classifier.weight, model.classifier.weight)  # moved from its init


@pytest.mark.parametrize("optimizer,precision", [("lamb", "bf16"), ("sgd", "fp32"), ("adam", "bf16")])
def test_lora_fine_tuning_runs_with_every_optimiser_and_precision(tiny_run, source, tmp_path, optimizer, precision):
    """The fine-tuning loop is pretraining's: its optimisers and autocast precisions apply to the
    adapter's parameters as to a whole model (fp16 needs a GPU's grad scaler path: not on CPU)."""
    summary = finetune(finetune_config(tiny_run, source, tmp_path / "ft", **{
        "adapter.name": "lora", "optim.name": optimizer, "train.precision": precision, "train.max_steps": 3,
        "optim.lr": 0.1 if optimizer == "sgd" else 1e-2}))
    model, _, _ = ckpt.load_checkpoint(tmp_path / "ft")
    lora_B = [p for n, p in model.named_parameters() if n.endswith("lora_B.weight")]
    assert summary["precision"] == precision and lora_B and any(p.abs().sum() > 0 for p in lora_B)  # B left zero
