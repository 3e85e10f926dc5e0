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
SAMPLES = ["Hello world, the quick fox.", "  spaces\tand\nnewlines  ", "unseen wörds ünïcode 🙂", "def g(y): return y"]
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
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
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
