"""`lmforge convert`: export to an HF-format directory and import back, checked by loading in transformers."""

from __future__ import annotations

import dataclasses
import sys
import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import randomise
from parity import assert_logits_match

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError, TokenizerError
from lmforge.generate import generate
from lmforge.models import build_model
from lmforge.tokenize import load_tokenizer
from lmforge.train.checkpoint import load_checkpoint, read_model_config, save_checkpoint

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from lmforge.cli import main  # noqa: E402
from lmforge.interop.convert import export_hf, import_hf  # noqa: E402
from lmforge.interop.hf import hf_config  # noqa: E402

from lmforge.models import PRESETS as MODEL_PRESETS  # noqa: E402

# Every family with an HF counterpart (mistral/falcon where this build has them): convert.py is generic.
PRESETS = {family: f"{family}-tiny" for family in ("gpt2", "llama", "mistral", "falcon")
           if f"{family}-tiny" in MODEL_PRESETS}
TEXTS = ["def alpha_0(beta, alpha=None):\n    return beta + alpha\n", "  total = count * 3 # émoji 🙂", ""]


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    return randomise(model, seed=None)


def _ids(vocab_size: int, batch_size: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch_size, length), generator=torch.Generator().manual_seed(1))


def _no_leftovers(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """For each family: an lmforge checkpoint of a random tiny model and its HF export."""
    base = tmp_path_factory.mktemp("convert")
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    runs = {}
    for family, preset in PRESETS.items():
        torch.manual_seed(0)
        model = _randomise(build_model(ModelConfig(preset=preset, vocab_size=vocab_size)))
        ckpt = save_checkpoint(base / family, 3, model, model.config, tiny_run["tokenizer"], {})
        runs[family] = {"ckpt": ckpt, "hf": export_hf(ckpt, base / f"{family}-hf")}
    return runs


@pytest.mark.parametrize("family", PRESETS)
def test_export_loads_in_transformers_with_same_logits_and_greedy_tokens(exported, family):
    model, tokenizer, _ = load_checkpoint(exported[family]["ckpt"])
    hf_model, info = transformers.AutoModelForCausalLM.from_pretrained(exported[family]["hf"],
                                                                       output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf_model.eval()
    assert hf_model.dtype == torch.float32
    assert hf_model.config.eos_token_id == tokenizer.eos_id and hf_model.config.pad_token_id == tokenizer.pad_id
    ids_BT = _ids(model.config.vocab_size)
    with torch.no_grad():
        assert_logits_match(model(ids_BT), hf_model(input_ids=ids_BT).logits)
    prompt_BT = ids_BT[:, :5]
    ours_BN = torch.stack(list(generate(model, prompt_BT, max_new_tokens=12, temperature=0)), dim=1)
    hf_BT = hf_model.generate(prompt_BT, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                              attention_mask=torch.ones_like(prompt_BT))
    assert torch.equal(ours_BN, hf_BT[:, 5:])


def test_exported_tokenizer_loads_in_transformers_and_encodes_the_same(exported):
    ours = load_tokenizer(exported["gpt2"]["ckpt"] / "tokenizer")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(exported["gpt2"]["hf"])
    for role in ("bos", "eos", "pad", "unk", "mask"):
        assert getattr(hf_tokenizer, f"{role}_token_id") == getattr(ours, f"{role}_id")
    for text in TEXTS:
        ids = hf_tokenizer(text, add_special_tokens=False).input_ids
        assert ids == ours.encode(text)
        assert hf_tokenizer.decode(ids) == ours.decode(ids) == text


@pytest.mark.parametrize("family", PRESETS)
def test_import_of_export_gives_back_the_same_checkpoint(exported, tmp_path, family):
    back = import_hf(exported[family]["hf"], tmp_path / "back")
    original, original_tokenizer, _ = load_checkpoint(exported[family]["ckpt"])
    model, tokenizer, ckpt_dir = load_checkpoint(back)
    assert ckpt_dir == back and not (back / "trainer_state.pt").exists()
    # Same fields; only the preset label is gone (an import names every field, as a pretrain run does).
    assert read_model_config(back) == dataclasses.replace(read_model_config(exported[family]["ckpt"]), preset="")
    ours, theirs = original.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert tokenizer.kind == original_tokenizer.kind
    assert tokenizer.fingerprint() == original_tokenizer.fingerprint()


@pytest.mark.parametrize("family", PRESETS)
def test_import_of_a_transformers_save_pretrained_model(tiny_run, tmp_path, family):
    """A model HF itself saved (no tokenizer.json; llama sharded) imports with the same logits (to float32 rounding)."""
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    config = hf_config(ModelConfig(preset=PRESETS[family], vocab_size=vocab_size, tie_embeddings=family == "gpt2"))
    torch.manual_seed(2)
    hf_model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # HF zero-inits biases and ones-inits norms: randomise them too
        for param in hf_model.parameters():
            if param.dim() == 1:
                param.normal_(1.0, 0.5)
    hf_dir = tmp_path / "hf"
    hf_model.save_pretrained(hf_dir, **({"max_shard_size": "40KB"} if family == "llama" else {}))
    assert (hf_dir / "model.safetensors.index.json").exists() == (family == "llama")

    with pytest.raises(TokenizerError, match="no tokenizer.json: pass tokenizer_dir"):
        import_hf(hf_dir, tmp_path / "ours")
    _no_leftovers(tmp_path / "ours")

    model, _, _ = load_checkpoint(import_hf(hf_dir, tmp_path / "ours", tokenizer_dir=tiny_run["tokenizer"]))
    ids_BT = _ids(vocab_size)
    with torch.no_grad():
        assert_logits_match(model(ids_BT), hf_model(input_ids=ids_BT).logits)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(hf_dir: Path, **changes) -> None:
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, **changes}))


def _bad_no_config(hf_dir: Path) -> None:
    (hf_dir / "config.json").unlink()


def _bad_model_type(hf_dir: Path) -> None:
    _edit_config(hf_dir, model_type="whisperx")


def _bad_shape(hf_dir: Path) -> None:
    tensors = load_file(hf_dir / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"] = tensors["model.layers.1.mlp.up_proj.weight"][:-1].clone()
    save_file(tensors, hf_dir / "model.safetensors", metadata={"format": "pt"})


def _bad_truncated(hf_dir: Path) -> None:
    data = (hf_dir / "model.safetensors").read_bytes()
    (hf_dir / "model.safetensors").write_bytes(data[: len(data) // 2])


def _bad_rope_scaling(hf_dir: Path) -> None:
    _edit_config(hf_dir, rope_scaling={"rope_type": "linear", "factor": 2.0})


def _bad_no_weights(hf_dir: Path) -> None:
    (hf_dir / "model.safetensors").unlink()


BAD_INPUTS = {
    "no-config": (_bad_no_config, CheckpointError, "not an HF checkpoint directory"),
    "unknown-model-type": (_bad_model_type, ConfigError, "'whisperx' is not supported.*llama"),
    "shape-mismatch": (_bad_shape, CheckpointError, r"'model.layers.1.mlp.up_proj.weight' has shape \(191, 64\), "
                                                    r"the config implies \(192, 64\)"),
    "truncated": (_bad_truncated, CheckpointError, "truncated or corrupt"),
    "rope-scaling": (_bad_rope_scaling, ConfigError, "RoPE scaling 'linear' is not supported"),
    "no-weights": (_bad_no_weights, CheckpointError, "not an HF checkpoint directory: .* no model.safetensors"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_hf_directory_raises_one_line_and_writes_nothing(exported, tmp_path, case):
    spoil, error, pattern = BAD_INPUTS[case]
    hf_dir = _copy(exported["llama"]["hf"], tmp_path / "hf")
    spoil(hf_dir)
    out = tmp_path / "out"
    with pytest.raises(error, match=pattern) as info:
        import_hf(hf_dir, out)
    assert "\n" not in str(info.value)
    _no_leftovers(out)


def test_output_directory_is_not_overwritten_unless_asked(exported, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty"):
        export_hf(exported["gpt2"]["ckpt"], out)
    assert (out / "keep.txt").read_text() == "mine"
    export_hf(exported["gpt2"]["ckpt"], out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(ConfigError, match="holds the source"):
        import_hf(out, out, overwrite=True)
    assert (out / "model.safetensors").exists()


def test_cli_convert_round_trip_and_one_line_errors(exported, tmp_path, capsys):
    hf_dir, ckpt_dir = tmp_path / "hf", tmp_path / "ckpt"
    assert main(["convert", str(exported["llama"]["ckpt"]), "--out_dir", str(hf_dir)]) == 0
    assert main(["convert", str(hf_dir), "--to", "lmforge", "--out_dir", str(ckpt_dir)]) == 0
    assert f"wrote {ckpt_dir}" in capsys.readouterr().out
    assert read_model_config(ckpt_dir) == dataclasses.replace(read_model_config(exported["llama"]["ckpt"]), preset="")
    assert main(["convert", str(tmp_path / "nowhere"), "--to", "lmforge", "--out_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an HF checkpoint directory" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("direction", ["export", "import"])
def test_convert_without_transformers_names_the_hf_extra(exported, tmp_path, capsys, monkeypatch, direction):
    monkeypatch.setitem(sys.modules, "transformers", None)  # "import transformers" now raises ImportError
    source = exported["gpt2"]["ckpt"] if direction == "export" else exported["gpt2"]["hf"]
    to = ["--to", "lmforge"] if direction == "import" else []
    assert main(["convert", str(source), *to, "--out_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs transformers: pip install 'lmforge[hf]'" in err
    assert not (tmp_path / "out").exists()


def test_sentencepiece_tokenizer_export_is_refused_cleanly(tiny_run, tmp_path):
    from lmforge.config import TokenizerConfig
    from lmforge.tokenize import train_tokenizer

    texts = [p.read_text() for p in sorted(tiny_run["corpus"].iterdir())]
    tokenizer = train_tokenizer(texts, TokenizerConfig(kind="sp_bpe", vocab_size=320, min_frequency=2))
    tokenizer.save(tmp_path / "tok")
    model = build_model(ModelConfig(preset="llama-tiny", vocab_size=tokenizer.vocab_size))
    ckpt = save_checkpoint(tmp_path / "run", 1, model, model.config, tmp_path / "tok", {})
    with pytest.raises(ConfigError, match="sp_bpe .*only byte_bpe, wordpiece, word and char tokenizers export"):
        export_hf(ckpt, tmp_path / "out")
    _no_leftovers(tmp_path / "out")


def test_bert_exports_as_masked_lm_and_round_trips(tiny_run, tmp_path):
    """BERT goes out as BertForMaskedLM (tied decoder weight and bias left to HF) and comes back exact."""
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    torch.manual_seed(0)
    model = _randomise(build_model(ModelConfig(preset="bert-tiny", vocab_size=vocab_size)))
    ckpt = save_checkpoint(tmp_path / "bert", 1, model, model.config, tiny_run["tokenizer"], {})
    hf_dir = export_hf(ckpt, tmp_path / "bert-hf")
    hf_model, info = transformers.AutoModelForMaskedLM.from_pretrained(hf_dir, output_loading_info=True)
    assert type(hf_model).__name__ == "BertForMaskedLM"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids_BT = _ids(vocab_size)
    with torch.no_grad():
        assert_logits_match(model(ids_BT), hf_model.eval()(input_ids=ids_BT).logits)
    back, _, _ = load_checkpoint(import_hf(hf_dir, tmp_path / "back"))
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[key]), key
