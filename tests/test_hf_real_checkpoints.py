"""Real checkpoints in (issue 12, item 1): tokenizers with their own special tokens and models that
`transformers` itself writes (bf16/fp16, sharded, saved without a head), imported by lmforge with
ids equal to ``AutoTokenizer``'s and logits (hidden states for bases) equal to transformers' in fp32.

Every fixture is tiny and built here (no downloads): tokenizers trained with the ``tokenizers``
library in the shape of GPT-2's (byte-level BPE + ``<|endoftext|>``), LLaMA-3's (byte-level BPE,
its specials, a chat template), BERT's (WordPiece + [CLS]/[SEP] template) and T5's (Unigram +
``</s>`` template + sentinels), wrapped and saved by transformers' classes; random HF models saved
with ``save_pretrained``. Module-scoped, so each is built once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from lmforge.errors import CheckpointError, TokenizerError
from lmforge.interop.convert import export_hf, import_hf, read_hf_model
from lmforge.interop.hf import BASE_HEAD
from lmforge.models import build_model
from lmforge.tokenize import load_hf_tokenizer, load_tokenizer
from lmforge.train import checkpoint as ckpt
from lmforge.train.init_from import read_init_source, source_tokenizer

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

transformers.logging.set_verbosity_error()

CORPUS = ["The quick brown fox jumps over the lazy dog.", "Hello, world! How are you today?",
          "def f(x):\n    return x * 2\n", "Machine learning models learn from data.",
          "A user asks a question and the assistant answers it politely."] * 20
# Raw text: special-token strings in it stay text for lmforge (see tokenize/base.py), tested apart.
SAMPLES = ["Hello world, the quick fox.", "  spaces\tand\nnewlines  ", "unseen wörds ünïcode 🙂",
           "def g(y): return y"]
# LLaMA-3's pre-tokenizer split (contractions, letters, 1-3 digits, punctuation, newlines, spaces).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
                   "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
                   "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
MESSAGES = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi! How are you?"}]


# --------------------------------------------------------------------------- tokenizers as published

def gpt2_like(out: Path) -> Path:
    """Byte-level BPE, one special <|endoftext|> as bos = eos = unk, no pad, no framing."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                                eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.save_pretrained(out)
    return out


def llama3_like(out: Path) -> Path:
    """Byte-level BPE with LLaMA-3's split, its five specials (no unk, pad, mask), bos framing and
    a chat template (saved as chat_template.jinja by transformers 5)."""
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=[],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.add_special_tokens(specials)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                                eos_token="<|eot_id|>")
    fast.chat_template = LLAMA3_TEMPLATE
    fast.save_pretrained(out)
    return out


def bert_like(out: Path) -> Path:
    """Lower-cased WordPiece with [PAD] [UNK] [CLS] [SEP] [MASK] (no bos/eos), [CLS] ... [SEP] framing."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=200, show_progress=False,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    fast = transformers.BertTokenizerFast(tokenizer_object=tok)
    fast.save_pretrained(out)
    return out


def t5_like(out: Path) -> Path:
    """Unigram with <pad> </s> <unk> (no bos, mask), sentinels <extra_id_0..9>, ... </s> framing."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                  pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"],
                            unk_token="<unk>", show_progress=False))
    tok.add_special_tokens([f"<extra_id_{i}>" for i in range(10)])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    # WhitespaceSplit + Metaspace and no normalizer, as transformers 5's T5Tokenizer rebuilds the
    # pipeline whatever tokenizer.json says (real T5 files also have a Precompiled normalizer).
    fast = transformers.T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                        extra_ids=0, additional_special_tokens=[f"<extra_id_{i}>" for i in range(10)])
    fast.save_pretrained(out)
    return out


BUILDERS = {"gpt2": gpt2_like, "llama3": llama3_like, "bert": bert_like, "t5": t5_like}


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def _hf_ids(hf_tokenizer, text: str, special: bool) -> list[int]:
    return hf_tokenizer(text, add_special_tokens=special)["input_ids"]


@pytest.mark.parametrize("name", BUILDERS)
def test_pretrained_ids_equal_autotokenizer(tokenizer_dirs, name):
    hf_tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dirs[name])
    ours = load_hf_tokenizer(tokenizer_dirs[name])
    assert ours.kind == "pretrained" and ours.vocab_size == len(hf_tok)
    for text in SAMPLES:
        assert ours.encode(text) == _hf_ids(hf_tok, text, False), text
        assert ours.frame(ours.encode(text)) == _hf_ids(hf_tok, text, True), text
        assert ours.encode_batch([text]) == [ours.encode(text)]


def test_pretrained_roles_from_tokenizer_config(tokenizer_dirs):
    gpt2, llama, bert, t5 = (load_hf_tokenizer(tokenizer_dirs[n]) for n in BUILDERS)
    # GPT-2: one token plays bos, eos and unk; no pad token, so pad falls back to eos
    assert gpt2.special_tokens == {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"}
    assert gpt2.bos_id == gpt2.eos_id == gpt2.pad_id == 0 and gpt2.mask_id is None
    assert gpt2.frame([5, 6]) == [5, 6]
    assert llama.bos_id == llama.token_to_id("<|begin_of_text|>") == 320
    assert llama.eos_id == llama.token_to_id("<|eot_id|>") == 324 and llama.pad_id == 324 and llama.unk_id is None
    assert llama.special_ids == frozenset(range(320, 325))
    assert llama.frame([7]) == [320, 7]
    # BERT: roles cls/sep beside pad/unk/mask (ids in the order its trainer was given them)
    assert bert.role_ids == {"pad": 0, "unk": 1, "mask": 4, "cls": 2, "sep": 3}
    assert bert.bos_id is None and bert.eos_id is None and bert.frame([9]) == [2, 9, 3]
    assert t5.role_ids == {"eos": 1, "pad": 0, "unk": 2} and t5.frame([9]) == [9, 1]
    assert t5.special_ids == frozenset({0, 1, 2} | {t5.token_to_id(f"<extra_id_{i}>") for i in range(10)})
    # decode drops every special, the sentinels too
    assert t5.decode([t5.token_to_id("<extra_id_3>")] + t5.encode("hello world")) == "hello world"


def test_special_strings_in_raw_text_stay_text_but_templates_parse_them(tokenizer_dirs):
    hf_tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dirs["bert"])
    ours = load_hf_tokenizer(tokenizer_dirs["bert"])
    text = "[CLS] hello [SEP]"
    assert not {2, 3} & set(ours.encode(text))  # "[" and "]" are not in this tiny vocabulary: [UNK]
    assert ours.decode(ours.encode(text)) == "cls hello sep"
    assert ours.encode_template(text) == _hf_ids(hf_tok, text, False) == [2] + ours.encode(" hello ") + [3]


def test_chat_template_ids_equal_apply_chat_template(tokenizer_dirs, tmp_path):
    hf_tok = transformers.AutoTokenizer.from_pretrained(tokenizer_dirs["llama3"])
    ours = load_hf_tokenizer(tokenizer_dirs["llama3"])
    assert ours.chat_template == LLAMA3_TEMPLATE
    for generation_prompt in (False, True):
        text = hf_tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=generation_prompt)
        ids = hf_tok.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=generation_prompt)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert ours.encode_template(text) == list(ids)
        assert ours.encode_template(text)[:2] == [320, 322]  # <|begin_of_text|><|start_header_id|>
    # saved and loaded: same ids, fingerprint, role map and template
    ours.save(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert (again.kind, again.fingerprint(), again.role_ids, again.chat_template) == \
        ("pretrained", ours.fingerprint(), ours.role_ids, LLAMA3_TEMPLATE)
    assert again.encode(SAMPLES[2]) == ours.encode(SAMPLES[2])


# --------------------------------------------------------------------------- models as published

def _save(model, tokenizer_dir: Path, out: Path, dtype: torch.dtype, shard: bool = False) -> Path:
    """``model``'s weights saved in ``dtype`` (sharded when asked) with a published tokenizer."""
    torch.manual_seed(0)
    with torch.no_grad():  # weights well away from 0, so the comparisons mean something
        for param in model.parameters():
            param.normal_(0.0, 0.2).add_(1.0 if param.dim() == 1 else 0.0)
    model.to(dtype).save_pretrained(out, **({"max_shard_size": "40KB"} if shard else {}))
    for path in tokenizer_dir.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    return out


def _hf_fp32(cls, directory: Path):
    """The HF model loaded from the half-precision files, computed in fp32."""
    return cls.from_pretrained(directory, dtype=torch.float32).eval()


def _llama_config(vocab: int) -> object:
    return transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                    tie_word_embeddings=False, bos_token_id=320, eos_token_id=324)


def _bert_config(vocab: int) -> object:
    return transformers.BertConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, max_position_embeddings=64, pad_token_id=0)


def _t5_config(vocab: int) -> object:
    return transformers.T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                 feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory, tokenizer_dirs) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    size = {name: load_hf_tokenizer(d).vocab_size for name, d in tokenizer_dirs.items()}
    gpt2 = transformers.GPT2Config(vocab_size=size["gpt2"], n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                   bos_token_id=0, eos_token_id=0)
    llama = _llama_config(size["llama3"])
    return {
        "gpt2": _save(transformers.GPT2LMHeadModel(gpt2), tokenizer_dirs["gpt2"], root / "gpt2", torch.float16),
        "llama": _save(transformers.LlamaForCausalLM(llama), tokenizer_dirs["llama3"], root / "llama",
                       torch.bfloat16, shard=True),
        "llama_base": _save(transformers.LlamaModel(llama), tokenizer_dirs["llama3"], root / "llama_base",
                            torch.float16),
        "bert_base": _save(transformers.BertModel(_bert_config(size["bert"])), tokenizer_dirs["bert"],
                           root / "bert_base", torch.bfloat16, shard=True),
        "bert_mlm": _save(transformers.BertForMaskedLM(_bert_config(size["bert"])), tokenizer_dirs["bert"],
                          root / "bert_mlm", torch.float16),
        "t5": _save(transformers.T5ForConditionalGeneration(_t5_config(size["t5"])), tokenizer_dirs["t5"],
                    root / "t5", torch.bfloat16, shard=True),
        "t5_encoder": _save(transformers.T5EncoderModel(_t5_config(size["t5"])), tokenizer_dirs["t5"],
                            root / "t5_encoder", torch.float16),
    }


def _ids(tokenizer, text: str = "Hello world, the quick brown fox answers politely.") -> torch.Tensor:
    return torch.tensor([tokenizer.frame(tokenizer.encode(text))])


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 1e-4, (ours - theirs).abs().max().item()


@pytest.mark.parametrize("name, hf_class, dtype", [("gpt2", "GPT2LMHeadModel", "float16"),
                                                   ("llama", "LlamaForCausalLM", "bfloat16"),
                                                   ("bert_mlm", "BertForMaskedLM", "float16"),
                                                   ("t5", "T5ForConditionalGeneration", "bfloat16")])
def test_convert_half_precision_checkpoints_with_their_tokenizers(hf_dirs, tmp_path, name, hf_class, dtype):
    """bf16/fp16 (sharded for llama and t5) -> lmforge checkpoint in fp32: the tokenizer is the
    published one and the logits equal transformers' on the same half-precision weights in fp32."""
    if name in ("llama", "t5"):
        assert (hf_dirs[name] / "model.safetensors.index.json").is_file()
    out = import_hf(hf_dirs[name], tmp_path / "ckpt")
    info = json.loads((out / "config.json").read_text())
    assert info["imported_from"]["source_dtype"] == dtype and info["imported_from"]["hf_class"] == hf_class
    model, tokenizer, _ = ckpt.load_checkpoint(out)
    assert tokenizer.kind == "pretrained" and next(model.parameters()).dtype == torch.float32
    hf_model = _hf_fp32(getattr(transformers, hf_class), hf_dirs[name])
    ids_1T = _ids(tokenizer)
    assert ids_1T[0].tolist() == transformers.AutoTokenizer.from_pretrained(hf_dirs[name])(
        "Hello world, the quick brown fox answers politely.")["input_ids"]
    with torch.no_grad():
        if name == "t5":
            decoder_1U = torch.tensor([[0] + ids_1T[0, :5].tolist()])
            _close(model(ids_1T, decoder_1U), hf_model(input_ids=ids_1T, decoder_input_ids=decoder_1U).logits)
        else:
            _close(model(ids_1T), hf_model(ids_1T).logits)


def test_llama_chat_template_survives_import_and_export(hf_dirs, tmp_path):
    out = import_hf(hf_dirs["llama"], tmp_path / "ckpt")
    back = export_hf(out, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(back)
    assert hf_tok.chat_template == LLAMA3_TEMPLATE
    ours = load_tokenizer(out / ckpt.TOKENIZER_DIR)
    text = hf_tok.apply_chat_template(MESSAGES, tokenize=False)
    assert ours.encode_template(text) == hf_tok(text, add_special_tokens=False)["input_ids"]
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(back).eval()
    model, _, _ = ckpt.load_checkpoint(out)
    with torch.no_grad():
        _close(model(_ids(ours)), hf_model(_ids(ours)).logits)


def _build(cfg, head: str, num_labels: int = 0):
    import dataclasses
    return build_model(dataclasses.replace(cfg, num_labels=num_labels) if num_labels else cfg, head).eval()


def test_llama_model_without_head_loads_as_base(hf_dirs):
    cfg, head, state = read_hf_model(hf_dirs["llama_base"])
    assert head == BASE_HEAD and "output.weight" not in state and "tok_embeddings.weight" in state
    source = read_init_source(str(hf_dirs["llama_base"]), source_tokenizer(hf_dirs["llama_base"]), "")
    model = _build(cfg, "causal_lm")
    report = source.load_into(model)
    assert report.new == ("output.weight",) and report.dropped == ()
    hf_model = _hf_fp32(transformers.LlamaModel, hf_dirs["llama_base"])
    ids_1T = _ids(load_hf_tokenizer(hf_dirs["llama_base"]))
    with torch.no_grad():
        _close(model.hidden_states(ids_1T), hf_model(ids_1T).last_hidden_state)


def test_bert_model_without_head_takes_a_classifier(hf_dirs):
    """BertModel (bf16, sharded, with its pooler) -> a sequence classifier: every encoder tensor
    and the pooler come over, the classifier keeps its init; hidden states and pooled output
    equal transformers'."""
    tokenizer = source_tokenizer(hf_dirs["bert_base"])
    source = read_init_source(str(hf_dirs["bert_base"]), tokenizer, "")
    assert source.head == BASE_HEAD and source.source_dtype == "bfloat16"
    torch.manual_seed(3)
    model = _build(source.model_cfg, "sequence_classification", num_labels=3)
    classifier_before = model.classifier.weight.detach().clone()
    report = source.load_into(model)
    assert report.new == ("classifier.weight", "classifier.bias") and report.dropped == ()
    assert report.summary() == "new: [classifier (x2)], dropped: []"
    assert torch.equal(model.classifier.weight, classifier_before)
    hf_model = _hf_fp32(transformers.BertModel, hf_dirs["bert_base"])
    ids_1T = _ids(tokenizer)
    assert ids_1T[0, 0].item() == tokenizer.role_ids["cls"]
    with torch.no_grad():
        h_1TD = model.hidden_states(ids_1T)
        hf_out = hf_model(ids_1T)
        _close(h_1TD, hf_out.last_hidden_state)
        _close(model.pooled(h_1TD), hf_out.pooler_output)
    # the MLM head needs a mask token: the BERT tokenizer has one, so masked_lm builds too
    model_mlm = _build(source.model_cfg, "masked_lm")
    assert {"head_dense.weight", "output.bias"} <= set(source.load_into(model_mlm).new)


def test_convert_a_base_writes_the_pretraining_head_with_new_head_weights(hf_dirs, tmp_path):
    out = import_hf(hf_dirs["bert_base"], tmp_path / "ckpt")
    info = json.loads((out / "config.json").read_text())
    assert info["head"]["name"] == "masked_lm" and info["imported_from"]["hf_class"] == "BertModel"
    assert set(info["imported_from"]["new_weights"]) == {"head_dense.weight", "head_dense.bias", "head_norm.weight",
                                                         "head_norm.bias", "output.bias"}  # output.weight: tied
    model, tokenizer, _ = ckpt.load_checkpoint(out)
    hf_model = _hf_fp32(transformers.BertModel, hf_dirs["bert_base"])
    with torch.no_grad():
        _close(model.hidden_states(_ids(tokenizer)), hf_model(_ids(tokenizer)).last_hidden_state)


def test_lmforge_masked_lm_checkpoint_initialises_a_classifier(hf_dirs, tmp_path):
    """One head's checkpoint starts another head's run: MLM head dropped, pooler and classifier new."""
    out = import_hf(hf_dirs["bert_mlm"], tmp_path / "mlm")
    tokenizer = source_tokenizer(out)
    source = read_init_source(str(out), tokenizer, "")
    model = _build(source.model_cfg, "sequence_classification", num_labels=2)
    report = source.load_into(model)
    assert set(report.new) == {"pooler.weight", "pooler.bias", "classifier.weight", "classifier.bias"}
    assert set(report.dropped) == {"head_dense.weight", "head_dense.bias", "head_norm.weight", "head_norm.bias",
                                   "output.weight", "output.bias"}
    hf_model = _hf_fp32(transformers.BertForMaskedLM, hf_dirs["bert_mlm"])
    ids_1T = _ids(tokenizer)
    with torch.no_grad():
        _close(model.hidden_states(ids_1T), hf_model.bert(ids_1T).last_hidden_state)


def test_t5_encoder_model_hidden_states_and_seq2seq_head(hf_dirs):
    cfg, head, state = read_hf_model(hf_dirs["t5_encoder"])
    assert head == BASE_HEAD and not any(key.startswith("decoder_") for key in state)
    source = read_init_source(str(hf_dirs["t5_encoder"]), source_tokenizer(hf_dirs["t5_encoder"]), "")
    model = _build(cfg, "seq2seq_lm")
    report = source.load_into(model)
    assert "decoder_layers.*.attn.q_proj (x2)" not in report.summary()  # grouped by stack
    assert all(key.startswith(("decoder_", "output.")) for key in report.new) and report.dropped == ()
    hf_model = _hf_fp32(transformers.T5EncoderModel, hf_dirs["t5_encoder"])
    ids_1T = _ids(load_hf_tokenizer(hf_dirs["t5_encoder"]))
    with torch.no_grad():
        _close(model.encode(ids_1T), hf_model(ids_1T).last_hidden_state)


# --------------------------------------------------------------------------- bad input

def test_tokenizer_larger_than_the_embeddings_is_one_error(hf_dirs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in hf_dirs["gpt2"].iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    config["vocab_size"] -= 10
    (bad / "config.json").write_text(json.dumps(config))
    state = load_file(str(bad / "model.safetensors"))
    save_file({k: v[:-10] if k == "transformer.wte.weight" else v for k, v in state.items()},
              str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"the tokenizer has 300 ids but config.json's vocab_size is 290"):
        import_hf(bad, tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"the tokenizer has 300 ids"):
        source_tokenizer(bad)
    assert not (tmp_path / "out").exists()


def test_missing_trunk_tensor_of_a_base_is_one_error(hf_dirs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in hf_dirs["llama_base"].iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    state = load_file(str(bad / "model.safetensors"))
    del state["layers.1.mlp.up_proj.weight"]
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"\(LlamaModel\) lacks 1 tensor.*layers.1.mlp.up_proj.weight"):
        read_hf_model(bad)


def test_tasks_needing_a_missing_role_say_so(tokenizer_dirs):
    from lmforge.fill_mask import fill_mask
    from lmforge.train.tasks.masked_lm import MaskedLMTask
    from lmforge.train.tasks.span_corruption import SpanCorruptionTask

    gpt2 = load_hf_tokenizer(tokenizer_dirs["gpt2"])
    with pytest.raises(TokenizerError, match=r"task masked_lm needs a mask token, but this pretrained tokenizer "
                                             r"has none \(its special tokens: bos='<\|endoftext\|>'"):
        MaskedLMTask(gpt2)
    bert = load_hf_tokenizer(tokenizer_dirs["bert"])
    assert MaskedLMTask(bert).mask_id == 4
    with pytest.raises(TokenizerError, match=r"task span_corruption needs a eos token"):
        SpanCorruptionTask(bert, bert.vocab_size + 100)
    with pytest.raises(TokenizerError, match=r"fill_mask needs a mask token"):
        fill_mask(torch.nn.Identity(), gpt2, "a <mask> b")
