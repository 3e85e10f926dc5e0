"""`lmforge convert` for T5 (v1.0 and v1.1, both directions, sentinels in the tokenizer) and for
BERT classification heads, each checked by loading the result in transformers."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import randomise as _randomise
from parity import assert_logits_match

from lmforge.config import ModelConfig
from lmforge.errors import CheckpointError, ConfigError
from lmforge.generate import generate_seq2seq
from lmforge.models import BertForSequenceClassification, BertForTokenClassification, build_model
from lmforge.tokenize import load_tokenizer
from lmforge.train.checkpoint import load_checkpoint, read_checkpoint_info, read_model_config, save_checkpoint
from lmforge.train.tasks import SpanCorruptionTask

transformers = pytest.importorskip("transformers")

from lmforge.interop.convert import export_hf, import_hf  # noqa: E402
from lmforge.interop.hf import hf_config  # noqa: E402

# v1.0: ReLU MLP, tied head, rescaled decoder output; v1.1: GEGLU, untied head, head_dim != dim / heads
# and an uneven decoder depth.
T5_VARIANTS = {
    "v1.0": {"preset": "t5-tiny"},
    "v1.1": {"preset": "t5-tiny", "feed_forward": "gated-gelu", "tie_embeddings": False, "head_dim": 24,
             "num_decoder_layers": 3},
}
TEXTS = ["def alpha_0(beta, alpha=None):\n    return beta + alpha\n", "  total = count * 3 # émoji 🙂"]


def _ids(vocab_size: int, batch_size: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch_size, length), generator=torch.Generator().manual_seed(seed))


def _mask(batch_size: int = 2, length: int = 12) -> torch.Tensor:
    """Row 0 full, row 1 with its last 4 positions padded."""
    mask_BT = torch.ones(batch_size, length, dtype=torch.long)
    mask_BT[1, -4:] = 0
    return mask_BT


def _no_leftovers(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def _t5_config(tiny_run, variant: str) -> ModelConfig:
    # the vocabulary span corruption trains with: the tokenizer's ids plus the 100 sentinels
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size + SpanCorruptionTask.NUM_SENTINELS
    return ModelConfig(vocab_size=vocab_size, **T5_VARIANTS[variant])


@pytest.fixture(scope="module")
def t5_exported(tiny_run, tmp_path_factory) -> dict[str, dict[str, Path]]:
    base = tmp_path_factory.mktemp("convert-t5")
    runs = {}
    for variant in T5_VARIANTS:
        model = _randomise(build_model(_t5_config(tiny_run, variant)))
        ckpt = save_checkpoint(base / variant, 3, model, model.config, tiny_run["tokenizer"], {})
        runs[variant] = {"ckpt": ckpt, "hf": export_hf(ckpt, base / f"{variant}-hf")}
    return runs


# --------------------------------------------------------------------------- T5 export


@pytest.mark.parametrize("variant", T5_VARIANTS)
def test_t5_export_loads_with_same_logits_and_greedy_tokens(t5_exported, variant):
    model, tokenizer, _ = load_checkpoint(t5_exported[variant]["ckpt"])
    hf_model, info = transformers.T5ForConditionalGeneration.from_pretrained(t5_exported[variant]["hf"],
                                                                             output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf_model.eval()
    assert hf_model.dtype == torch.float32
    ids_BT, mask_BT, labels_BU = _ids(model.config.vocab_size), _mask(), _ids(model.config.vocab_size, length=7, seed=2)
    with torch.no_grad():
        ours = model(ids_BT, labels_BU, mask_BT)
        theirs = hf_model(input_ids=ids_BT, attention_mask=mask_BT, decoder_input_ids=labels_BU).logits
    assert ours.shape == theirs.shape == (2, 7, model.config.vocab_size)
    assert_logits_match(ours, theirs)

    ours_BN = torch.stack(list(generate_seq2seq(model, ids_BT, 10, temperature=0.0, attention_mask_BT=mask_BT,
                                                decoder_start_id=tokenizer.pad_id)), dim=1)
    with torch.no_grad():  # no eos: compare all 10 tokens; HF's cache assumes decoder depth = encoder depth
        hf_BN = hf_model.generate(input_ids=ids_BT, attention_mask=mask_BT, max_new_tokens=10, min_new_tokens=10,
                                  do_sample=False, eos_token_id=None,
                                  use_cache=model.config.num_decoder_layers in (0, model.config.num_layers))
    assert hf_BN[0, 0].item() == tokenizer.pad_id  # generation starts from config.json's decoder start
    assert torch.equal(hf_BN[:, 1:], ours_BN)


def test_t5_export_config_has_the_tokenizers_pad_eos_and_decoder_start(t5_exported):
    tokenizer = load_tokenizer(t5_exported["v1.0"]["ckpt"] / "tokenizer")
    assert (tokenizer.pad_id, tokenizer.eos_id) == (1, 2)  # not T5's own 0 and 1: the ids must be carried over
    for variant, tied in (("v1.0", True), ("v1.1", False)):
        hf_dir = t5_exported[variant]["hf"]
        config = json.loads((hf_dir / "config.json").read_text())
        generation = json.loads((hf_dir / "generation_config.json").read_text())
        for values in (config, generation):
            assert (values["pad_token_id"], values["eos_token_id"], values["decoder_start_token_id"]) == (1, 2, 1)
        assert config["tie_word_embeddings"] is tied  # the published v1.0 / v1.1 config.json convention
        assert config["feed_forward_proj"] == ("relu" if tied else "gated-gelu")
        assert "bos_token_id" not in config or config["bos_token_id"] is None


def test_t5_export_tokenizer_has_the_sentinels_at_the_span_corruption_ids(t5_exported, tiny_run):
    ckpt, hf_dir = t5_exported["v1.1"]["ckpt"], t5_exported["v1.1"]["hf"]
    ours = load_tokenizer(ckpt / "tokenizer")
    vocab_size = read_model_config(ckpt).vocab_size
    task = SpanCorruptionTask(ours, vocab_size)
    from lmforge.models.families import t5 as t5_family

    assert t5_family.NUM_SENTINELS == task.NUM_SENTINELS
    for loader in (transformers.AutoTokenizer.from_pretrained,
                   lambda d: transformers.PreTrainedTokenizerFast(tokenizer_file=str(Path(d) / "tokenizer.json"))):
        hf_tokenizer = loader(hf_dir)
        ids = hf_tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(100)])
        assert ids == task.sentinel_ids == list(range(vocab_size - 1, vocab_size - 101, -1))
        assert hf_tokenizer.convert_ids_to_tokens([vocab_size - 1, vocab_size - 100]) == ["<extra_id_0>",
                                                                                          "<extra_id_99>"]
        for text in TEXTS:  # the tokenizer's own ids are untouched
            assert hf_tokenizer(text, add_special_tokens=False).input_ids == ours.encode(text)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert (hf_tokenizer.pad_token_id, hf_tokenizer.eos_token_id) == (ours.pad_id, ours.eos_id)
    assert "<extra_id_0>" in hf_tokenizer.all_special_tokens

    # a span-corruption target decodes with its sentinels, in order, ending in eos
    tokens = np.asarray(ours.encode(" ".join(TEXTS) * 4), dtype=np.uint16)
    batch = task.batch(tokens, np.array([0]), seq_len=48, seed=3)
    labels = [int(t) for t in batch["labels"][0] if t >= 0]
    text = hf_tokenizer.decode(labels)
    assert text.startswith("<extra_id_0>") and text.endswith("</s>")
    num_spans = sum(t >= task.first_sentinel for t in labels)
    assert num_spans >= 2
    assert [text.find(f"<extra_id_{i}>") for i in range(num_spans)] == \
        sorted(text.find(f"<extra_id_{i}>") for i in range(num_spans))
    inputs_text = hf_tokenizer.decode([int(t) for t in batch["inputs"][0] if t != ours.pad_id])
    assert inputs_text.count("<extra_id_") == num_spans - 1  # the target has one closing sentinel more


# --------------------------------------------------------------------------- T5 import


@pytest.mark.parametrize("variant", T5_VARIANTS)
def test_t5_import_of_export_gives_back_the_same_checkpoint(t5_exported, tmp_path, variant):
    back = import_hf(t5_exported[variant]["hf"], tmp_path / "back")
    original, original_tokenizer, _ = load_checkpoint(t5_exported[variant]["ckpt"])
    model, tokenizer, _ = load_checkpoint(back)
    assert read_model_config(back) == dataclasses.replace(read_model_config(t5_exported[variant]["ckpt"]), preset="")
    ours, theirs = original.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    # the sentinels the export added are gone again: the very same tokenizer
    assert tokenizer.vocab_size == original_tokenizer.vocab_size
    assert tokenizer.fingerprint() == original_tokenizer.fingerprint()


@pytest.mark.parametrize("variant", T5_VARIANTS)
def test_t5_import_of_a_transformers_save_pretrained_model(tiny_run, tmp_path, variant):
    cfg = _t5_config(tiny_run, variant)
    config = hf_config(cfg)
    hf_model = transformers.T5ForConditionalGeneration(config).eval()
    hf_model.config.tie_word_embeddings = cfg.tie_embeddings  # as the published configs say
    _randomise(hf_model, seed=4)  # unties nothing: a v1.1 head is its own tensor
    hf_dir = tmp_path / "hf"
    hf_model.save_pretrained(hf_dir)
    model, _, _ = load_checkpoint(import_hf(hf_dir, tmp_path / "ours", tokenizer_dir=tiny_run["tokenizer"]))
    assert model.config.tie_embeddings == cfg.tie_embeddings
    ids_BT, mask_BT, labels_BU = _ids(cfg.vocab_size), _mask(), _ids(cfg.vocab_size, length=7, seed=2)
    with torch.no_grad():
        ours = model(ids_BT, labels_BU, mask_BT)
        theirs = hf_model(input_ids=ids_BT, attention_mask=mask_BT, decoder_input_ids=labels_BU).logits
    assert_logits_match(ours, theirs)


def _edit_config(hf_dir: Path, **changes) -> None:
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, **changes}))


T5_UNSUPPORTED = {
    "activation": ({"feed_forward_proj": "gated-silu"}, "feed_forward_proj 'gated-silu' is not supported"),
    "gating": ({"is_gated_act": True}, "is_gated_act=True with feed_forward_proj 'relu' is not supported"),
    "dense-act": ({"feed_forward_proj": "gated-gelu", "is_gated_act": True, "dense_act_fn": "gelu"},
                  "dense_act_fn 'gelu' with feed_forward_proj 'gated-gelu' is not supported"),
    "relative-attention": ({"relative_attention_num_buckets": 2}, "relative attention with 2 buckets"),
    "encoder-only": ({"is_encoder_decoder": False}, "encoder-only or decoder-only"),
}


@pytest.mark.parametrize("case", T5_UNSUPPORTED)
def test_t5_unsupported_hf_config_raises_one_line_and_writes_nothing(t5_exported, tmp_path, case):
    changes, pattern = T5_UNSUPPORTED[case]
    hf_dir = tmp_path / "hf"
    shutil.copytree(t5_exported["v1.0"]["hf"], hf_dir)
    _edit_config(hf_dir, **changes)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=pattern) as info:
        import_hf(hf_dir, out)
    assert "\n" not in str(info.value) and str(hf_dir) in str(info.value)
    _no_leftovers(out)


def test_t5_sentinels_at_other_ids_are_refused(t5_exported, tmp_path):
    hf_dir = tmp_path / "hf"
    shutil.copytree(t5_exported["v1.0"]["hf"], hf_dir)
    _edit_config(hf_dir, vocab_size=json.loads((hf_dir / "config.json").read_text())["vocab_size"] + 8)
    with pytest.raises(Exception, match="sentinels at other ids than lmforge uses"):
        import_hf(hf_dir, tmp_path / "out")
    _no_leftovers(tmp_path / "out")


def test_t5_export_without_room_for_the_sentinels_is_refused(tiny_run, tmp_path):
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size + 40
    model = build_model(ModelConfig(preset="t5-tiny", vocab_size=vocab_size))
    ckpt = save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"], {})
    with pytest.raises(ConfigError, match=f"must be at least {vocab_size + 60}"):
        export_hf(ckpt, tmp_path / "out")
    _no_leftovers(tmp_path / "out")


# --------------------------------------------------------------------------- BERT heads

BERT_HEADS = {"sequence_classification": (BertForSequenceClassification, "AutoModelForSequenceClassification"),
              "token_classification": (BertForTokenClassification, "AutoModelForTokenClassification")}


@pytest.mark.parametrize("head", BERT_HEADS)
@pytest.mark.parametrize("named", [True, False], ids=["head-field", "head-from-weights"])
def test_bert_classifier_exports_to_its_hf_head_and_round_trips(tiny_run, tmp_path, head, named):
    model_class, auto_class = BERT_HEADS[head]
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    model = _randomise(build_model(ModelConfig(preset="bert-tiny", vocab_size=vocab_size, num_labels=3), head))
    labels = {"0": "negative", "1": "neutral", "2": "positive"}
    ckpt = save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"], {},
                           head=head if named else None, id2label={int(i): name for i, name in labels.items()})
    if not named:  # a v1-style checkpoint that names no head: it is read off the weights
        config = json.loads((ckpt / "config.json").read_text())
        config["format"] = "lmforge-checkpoint-v1"
        config["id2label"] = config.pop("head")["id2label"]
        for key in ("task", "tokenizer", "adapters", "base", "quantization", "sharding", "training", "imported_from"):
            del config[key]
        (ckpt / "config.json").write_text(json.dumps(config))

    hf_dir = export_hf(ckpt, tmp_path / "hf")
    hf_model, info = getattr(transformers, auto_class).from_pretrained(hf_dir, output_loading_info=True)
    assert type(hf_model).__name__ == model_class.__name__
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert hf_model.config.num_labels == 3
    assert hf_model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert hf_model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    ids_BT, mask_BT = _ids(vocab_size), _mask()
    with torch.no_grad():
        ours = model(ids_BT, mask_BT)
        theirs = hf_model.eval()(input_ids=ids_BT, attention_mask=mask_BT).logits
    assert ours.shape == theirs.shape == ((2, 3) if head == "sequence_classification" else (2, 12, 3))
    assert_logits_match(ours, theirs)

    back = import_hf(hf_dir, tmp_path / "back")
    saved = json.loads((back / "config.json").read_text())
    assert saved["format"] == "lmforge-checkpoint-v2"
    assert saved["head"] == {"name": head, "id2label": labels}
    assert read_model_config(back) == dataclasses.replace(model.config, preset="")
    restored, _, _ = load_checkpoint(back)
    assert type(restored) is model_class
    assert read_checkpoint_info(back).head.labels() == {0: "negative", 1: "neutral", 2: "positive"}
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[key]), key


def test_bert_classifier_without_labels_gets_hf_default_names(tiny_run, tmp_path):
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    model = _randomise(build_model(ModelConfig(preset="bert-tiny", vocab_size=vocab_size, num_labels=3),
                                   "token_classification"))
    ckpt = save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"], {})
    hf_dir = export_hf(ckpt, tmp_path / "hf")
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    assert transformers.AutoConfig.from_pretrained(hf_dir).num_labels == 3
    back = import_hf(hf_dir, tmp_path / "back")
    assert json.loads((back / "config.json").read_text())["head"]["id2label"] == {"0": "LABEL_0", "1": "LABEL_1",
                                                                                 "2": "LABEL_2"}


def test_bert_head_field_that_contradicts_the_weights_is_refused(tiny_run, tmp_path):
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    model = build_model(ModelConfig(preset="bert-tiny", vocab_size=vocab_size, num_labels=2), "sequence_classification")
    ckpt = save_checkpoint(tmp_path / "run", 1, model, model.config, tiny_run["tokenizer"], {})
    config = json.loads((ckpt / "config.json").read_text())
    config["head"]["name"] = "token_classification"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="says head 'token_classification' but its weights are those of a "
                                              "sequence_classification model") as info:
        export_hf(ckpt, tmp_path / "out")
    assert "\n" not in str(info.value)
    _no_leftovers(tmp_path / "out")


def test_hf_bert_with_an_unsupported_head_is_refused(tiny_run, tmp_path):
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    config = hf_config(ModelConfig(preset="bert-tiny", vocab_size=vocab_size))
    transformers.BertForQuestionAnswering(config).save_pretrained(tmp_path / "hf")
    with pytest.raises(ConfigError, match="architecture BertForQuestionAnswering is not supported"):
        import_hf(tmp_path / "hf", tmp_path / "out")
    _no_leftovers(tmp_path / "out")


def test_hf_bert_pretraining_checkpoint_imports_as_masked_lm(tiny_run, tmp_path):
    """The original BERT releases: MLM head plus pooler and next-sentence head, which are left out."""
    vocab_size = load_tokenizer(tiny_run["tokenizer"]).vocab_size
    hf_model = transformers.BertForPreTraining(hf_config(ModelConfig(preset="bert-tiny", vocab_size=vocab_size)))
    _randomise(hf_model, seed=6)
    hf_model.save_pretrained(tmp_path / "hf")
    back = import_hf(tmp_path / "hf", tmp_path / "ours", tokenizer_dir=tiny_run["tokenizer"])
    model, _, _ = load_checkpoint(back)
    assert type(model).__name__ == "BertForMaskedLM"
    assert json.loads((back / "config.json").read_text())["head"]["name"] == "masked_lm"
    ids_BT, mask_BT = _ids(vocab_size), _mask()
    with torch.no_grad():
        theirs = hf_model(input_ids=ids_BT, attention_mask=mask_BT).prediction_logits
        assert_logits_match(model(ids_BT, mask_BT), theirs)
