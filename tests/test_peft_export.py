"""PEFT-format export of LoRA adapters: `peft.PeftModel.from_pretrained` on the HF export of the
base gives our logits (fp32); import back; families whose HF layout fuses the targets refuse."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import randomise

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError
from lmforge.finetune.adapters import LoRALinear, adapter_options, adapter_spec, apply_adapter, export_peft, import_peft
from lmforge.models import build_model
from lmforge.tokenize import load_tokenizer

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from lmforge.interop.convert import export_hf  # noqa: E402
from lmforge.interop.hf import to_hf_model  # noqa: E402
from lmforge.train.checkpoint import save_checkpoint  # noqa: E402


def _randomise_b(model: torch.nn.Module) -> None:
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.weight.normal_(0.0, 0.1)


def _ids(vocab_size: int, length: int = 12) -> torch.Tensor:
    return torch.randint(0, vocab_size, (2, length), generator=torch.Generator().manual_seed(1))


def test_llama_lora_export_loads_in_peft_with_the_same_logits(tiny_run, tmp_path):
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    torch.manual_seed(0)
    model = randomise(build_model(ModelConfig(preset="llama-tiny", vocab_size=vocab_size)), seed=0,
                      matrix_std=0.05, vector_std=0.1)
    ckpt = save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"], {})
    hf_dir = export_hf(ckpt, tmp_path / "hf")

    options = adapter_options(adapter_spec("lora"), {"rank": 4, "alpha": 6.0, "rslora": True, "dropout": 0.1,
                                                     "targets": ["q_proj", "v_proj", "mlp.out_proj", "gate_proj"]})
    apply_adapter(model, "lora", options)
    _randomise_b(model)
    out = export_peft(model, model.config, options, tmp_path / "adapter", base_model_name_or_path=str(hf_dir))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM" and config["r"] == 4
    assert config["lora_alpha"] == pytest.approx(6.0) and config["use_rslora"] is True and config["bias"] == "none"
    assert "model.layers.0.self_attn.q_proj" in config["target_modules"]
    assert "model.layers.1.mlp.down_proj" in config["target_modules"] and len(config["target_modules"]) == 8

    hf_base = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    hf_model = peft.PeftModel.from_pretrained(hf_base, out).eval()
    ids_BT = _ids(vocab_size)
    model.eval()
    with torch.no_grad():
        ours = model(ids_BT)
        theirs = hf_model(input_ids=ids_BT).logits
        with hf_model.disable_adapter():
            base_logits = hf_model(input_ids=ids_BT).logits
    assert (ours - theirs).abs().max() < 1e-4
    assert (ours - base_logits).abs().max() > 1e-2  # the adapters change the logits: the check is not vacuous
    assert hf_model.base_model.model.model.layers[0].self_attn.q_proj.scaling["default"] == pytest.approx(6.0 / 2)

    # import back onto a fresh copy of the base: same logits as the adapted model
    torch.manual_seed(0)
    fresh = randomise(build_model(ModelConfig(preset="llama-tiny", vocab_size=vocab_size)), seed=0,
                      matrix_std=0.05, vector_std=0.1)
    wrapped = import_peft(fresh, fresh.config, out)
    assert len(wrapped) == 8
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(ids_BT), ours, rtol=0, atol=1e-6)


def test_bert_sequence_classifier_exports_with_its_classifier_as_modules_to_save(tmp_path):
    torch.manual_seed(0)
    model = randomise(build_model(ModelConfig(preset="bert-tiny", vocab_size=80, num_labels=3),
                                  "sequence_classification"), seed=0, matrix_std=0.05, vector_std=0.1)
    hf_base = to_hf_model(model)
    options = adapter_options(adapter_spec("lora"), {"rank": 4, "targets": ["q_proj", "v_proj"],
                                                     "train_modules": ["classifier"]})
    apply_adapter(model, "lora", options)
    _randomise_b(model)
    with torch.no_grad():
        model.classifier.weight.add_(0.3)  # the trained classifier differs from the base's
    out = export_peft(model, model.config, options, tmp_path / "adapter")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["modules_to_save"] == ["classifier"]
    assert "bert.encoder.layer.1.attention.self.query" in config["target_modules"]
    hf_model = peft.PeftModel.from_pretrained(hf_base, out).eval()
    ids_BT = _ids(80, 10)
    model.eval()
    with torch.no_grad():
        ours = model(ids_BT)
        theirs = hf_model(input_ids=ids_BT).logits
        with hf_model.disable_adapter():
            base_logits = hf_model(input_ids=ids_BT).logits
    assert ours.shape == theirs.shape == (2, 3)
    assert (ours - base_logits).abs().max() > 1e-2
    assert (ours - theirs).abs().max() < 1e-4


def test_targets_fused_in_the_hf_layout_are_refused_with_what_can_export(tmp_path):
    model = build_model(ModelConfig(preset="gpt2-tiny", vocab_size=64))
    options = adapter_options(adapter_spec("lora"), {"targets": ["q_proj"]})
    apply_adapter(model, "lora", options)
    with pytest.raises(ConfigError, match=r"layers\.0\.attn\.q_proj has no single HF weight of its own in gpt2's "
                                          r"HF layout \(fused or transposed there\).*no gpt2 block linear"):
        export_peft(model, model.config, options, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
    falcon = build_model(ModelConfig(preset="falcon-tiny", vocab_size=64))
    apply_adapter(falcon, "lora", options)
    with pytest.raises(ConfigError, match="target only attn.out_proj, mlp.in_proj, mlp.out_proj to export"):
        export_peft(falcon, falcon.config, options, tmp_path / "adapter")


def test_export_needs_adapters_and_import_needs_a_peft_dir(tmp_path):
    model = build_model(ModelConfig(preset="llama-tiny", vocab_size=64))
    options = adapter_options(adapter_spec("lora"), {})
    with pytest.raises(ConfigError, match="no LoRA adapters to export"):
        export_peft(model, model.config, options, tmp_path / "a")
    with pytest.raises(CheckpointError, match="is not a PEFT adapter directory"):
        import_peft(model, model.config, tmp_path)
