"""Tokenizers: every kind trains, saves, loads and encodes identically; round trips; bad input."""

from __future__ import annotations

import json
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.config import TokenizerConfig
from lmforge.errors import TokenizerError
from lmforge.tokenize import KINDS, SPECIAL_TOKENS, Tokenizer, load_tokenizer, train_tokenizer
from lmforge.tokenize.base import META_FILE, sample_corpus
from lmforge.tokenize.spm import _sentences

LOSSLESS_KINDS = ["byte_bpe", "sp_unigram", "sp_bpe"]
VOCAB_SIZE = 400

_NAMES = ["value", "items", "result", "count", "total", "index", "name", "data", "node", "key"]
_OPS = ["+", "-", "*", "//", "%"]


def _python_like_corpus(num_functions: int = 60, seed: int = 0) -> list[str]:
    """Deterministic Python-ish documents: indentation (spaces and one tab), blank lines,
    strings, comments, a little non-ASCII, and a line longer than sentencepiece's default
    4192-byte sentence limit."""
    rng = random.Random(seed)
    docs = []
    for doc_index in range(6):
        lines = [f'"""Module {doc_index}: helpers for café data 数据."""', "", "import os", ""]
        for _ in range(num_functions // 6):
            a, b, c = rng.sample(_NAMES, 3)
            op = rng.choice(_OPS)
            lines += [
                f"def add_{a}({a}, {b}=None):",
                f"    # combine {a} and {b}",
                f"    if {b} is None:",
                f"        {b} = {rng.randint(0, 99)}",
                f"    {c} = {a} {op} {b}",
                f"\treturn {c}  # tab-indented",
                "",
                "",
            ]
        if doc_index == 0:
            lines.append("LONG = [" + ", ".join(str(i) for i in range(1500)) + "]")
        docs.append("\n".join(lines) + "\n")
    return docs


CORPUS = _python_like_corpus()
SAMPLE = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def trained() -> dict[str, Tokenizer]:
    """One tokenizer per kind, trained once for the whole module (keeps the file fast)."""
    return {kind: train_tokenizer(CORPUS, TokenizerConfig(kind=kind, vocab_size=VOCAB_SIZE, min_frequency=2))
            for kind in KINDS}


def test_corpus_has_a_line_longer_than_sentencepiece_limit():
    assert max(len(line) for doc in CORPUS for line in doc.splitlines()) > 4192


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_same_fingerprint_and_encodings(kind, trained, tmp_path):
    tok = trained[kind]
    assert tok.kind == kind
    tok.save(tmp_path)
    native = "tokenizer.model" if kind.startswith("sp_") else "tokenizer.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([native, META_FILE])
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["kind"] == kind and meta["special_tokens"] == SPECIAL_TOKENS

    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tok) and loaded.kind == kind
    assert loaded.fingerprint() == tok.fingerprint()
    assert len(tok.fingerprint()) == 64 and int(tok.fingerprint(), 16) >= 0
    assert loaded.vocab_size == tok.vocab_size
    texts = CORPUS[:3] + [SAMPLE, ""]
    expected = [tok.encode(t) for t in texts]
    assert [loaded.encode(t) for t in texts] == expected
    assert loaded.encode_batch(texts) == expected
    assert tok.encode_batch(iter(texts)) == expected
    assert tok.encode("") == []


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_keeps_behaviour(kind, trained):
    tok = trained[kind]
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.fingerprint() == tok.fingerprint()
    assert clone.encode(SAMPLE + "<s>") == tok.encode(SAMPLE + "<s>")  # specials stay plain text


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_same_roles_distinct_valid_ids(kind, trained):
    tok = trained[kind]
    assert tok.special_tokens == {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}
    ids = {"bos": tok.bos_id, "pad": tok.pad_id, "eos": tok.eos_id, "unk": tok.unk_id, "mask": tok.mask_id}
    assert ids == {"bos": 0, "pad": 1, "eos": 2, "unk": 3, "mask": 4}  # same order for every kind
    for role, token in tok.special_tokens.items():
        assert tok.token_to_id(token) == ids[role]
    assert tok.token_to_id("no-such-token-xyz") is None
    assert tok.vocab_size <= VOCAB_SIZE
    assert all(0 <= i < tok.vocab_size for doc in CORPUS for i in tok.encode(doc))


@pytest.mark.parametrize("kind", KINDS)
def test_encode_adds_no_specials_and_literal_special_strings_are_text(kind, trained):
    tok = trained[kind]
    specials = {tok.bos_id, tok.eos_id, tok.pad_id, tok.mask_id}
    assert not specials & set(tok.encode(SAMPLE))
    assert not specials & set(tok.encode("x = '<s></s><pad><mask>'"))


@pytest.mark.parametrize("kind", KINDS)
def test_decode_skips_specials_by_default(kind, trained):
    tok = trained[kind]
    ids = tok.encode("value")
    plain = tok.decode(ids)
    assert tok.decode([tok.bos_id] + ids + [tok.pad_id, tok.eos_id]) == plain
    shown = tok.decode([tok.bos_id] + ids + [tok.eos_id], skip_special=False)
    assert shown.startswith("<s>") and shown.endswith("</s>") and "value" in shown


@pytest.mark.parametrize("kind", LOSSLESS_KINDS)
def test_lossless_kinds_round_trip_code_and_unseen_characters(kind, trained):
    tok = trained[kind]
    for doc in CORPUS:
        assert tok.decode(tok.encode(doc)) == doc
    unseen = "x\t=\t'🦀 日本語 Ω'\r\n\n    \x00\x07 </s> <mask>\n"  # byte fallback, no <unk>
    ids = tok.encode(unseen)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == unseen
    assert tok.decode(tok.encode(SAMPLE) + tok.encode(unseen)) == SAMPLE + unseen  # no prefix space


def test_sentencepiece_known_lossiness_u2581_becomes_space(trained):
    # sentencepiece's internal space symbol; documented in tokenize/spm.py
    tok = trained["sp_unigram"]
    assert tok.decode(tok.encode("a\u2581b")) == "a b"


def test_char_exact_on_seen_characters_unk_otherwise(trained):
    tok = trained["char"]
    assert tok.decode(tok.encode(SAMPLE)) == SAMPLE
    assert tok.decode(tok.encode(CORPUS[1])) == CORPUS[1]
    ids = tok.encode("a🦀b")
    assert ids == [tok.token_to_id("a"), tok.unk_id, tok.token_to_id("b")]
    assert tok.decode(ids) == "ab"
    assert tok.decode(ids, skip_special=False) == "a<unk>b"


def test_char_vocab_is_frequent_characters_up_to_vocab_size():
    texts = ["aaaa bbb cc d\n", "aaaa"]
    tok = train_tokenizer(texts, TokenizerConfig(kind="char", vocab_size=9, min_frequency=2))
    # specials, then by frequency: a(8) b(3) ' '(3) c(2); d(1) and \n(1) are below min_frequency
    assert tok.vocab_size == 9
    assert {tok.token_to_id(c) for c in "ab c"} == {5, 6, 7, 8}
    assert tok.token_to_id("d") is None and tok.token_to_id("\n") is None
    assert tok.decode(tok.encode("cab d"), skip_special=False) == "cab <unk>"


@pytest.mark.parametrize("kind", ["wordpiece", "word"])
def test_word_kinds_are_lossy_on_whitespace(kind, trained):
    tok = trained[kind]
    # Words and isolated punctuation (BERT's, which includes "_") come back joined by
    # single spaces: indentation, tabs and newlines are gone.
    text = "def add_value(value, items=None):\n\tif items is None:\n        return value\n"
    assert tok.decode(tok.encode(text)) == "def add _ value ( value , items = None ) : if items is None : return value"


def test_word_unknown_word_is_unk(trained):
    tok = trained["word"]
    ids = tok.encode("value zzzunseen")
    assert ids == [tok.token_to_id("value"), tok.unk_id]
    assert tok.decode(ids) == "value"
    assert tok.decode(ids, skip_special=False) == "value <unk>"


def test_wordpiece_splits_unseen_words_into_pieces(trained):
    tok = trained["wordpiece"]
    ids = tok.encode("valueitems")
    assert len(ids) >= 2 and tok.unk_id not in ids
    assert tok.decode(ids) == "valueitems"


@pytest.mark.parametrize("kind", ["wordpiece", "word"])
def test_lowercase_option(kind):
    texts = ["Value value VALUE items Items"] * 5
    lower = train_tokenizer(texts, TokenizerConfig(kind=kind, vocab_size=60, lowercase=True))
    assert lower.encode("VALUE Items") == lower.encode("value items")
    assert lower.decode(lower.encode("VALUE Items")) == "value items"
    cased = train_tokenizer(texts, TokenizerConfig(kind=kind, vocab_size=60, lowercase=False))
    assert cased.encode("VALUE") != cased.encode("value")


# HF's WordPiece trainer is not deterministic: "##" pieces get ids in hash-map order, which
# breaks ties between equally frequent merges differently per run (huggingface/tokenizers#1794).
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "wordpiece"])
def test_training_is_deterministic(kind, trained):
    again = train_tokenizer(CORPUS, TokenizerConfig(kind=kind, vocab_size=VOCAB_SIZE, min_frequency=2))
    assert again.fingerprint() == trained[kind].fingerprint()


def test_byte_bpe_uses_the_requested_vocab_size(trained):
    assert trained["byte_bpe"].vocab_size == VOCAB_SIZE
    assert trained["sp_bpe"].vocab_size == VOCAB_SIZE


def test_fingerprint_differs_between_tokenizers(trained):
    assert len({tok.fingerprint() for tok in trained.values()}) == len(KINDS)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_byte_bpe_round_trips_any_text(trained, text):
    tok = trained["byte_bpe"]
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == text


@settings(max_examples=50, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581")))
def test_sentencepiece_round_trips_any_text_but_u2581(trained, text):
    tok = trained["sp_bpe"]
    assert tok.decode(tok.encode(text)) == text


# --------------------------------------------------------------------------- sampling


def test_sample_corpus_stops_at_max_bytes_on_a_character_boundary():
    assert list(sample_corpus(["abc", "", "de", "fgh"], max_bytes=5)) == ["abc", "de"]
    assert list(sample_corpus(["abc", "", "de", "fgh"], max_bytes=6)) == ["abc", "de", "f"]
    assert list(sample_corpus(["aéb", "c"], max_bytes=2)) == ["a"]  # é is 2 bytes: not split
    assert list(sample_corpus(["aéb", "c"], max_bytes=3)) == ["aé"]


def test_max_train_bytes_limits_what_is_learned():
    cfg = TokenizerConfig(kind="char", vocab_size=100, min_frequency=1, max_train_bytes=3)
    tok = train_tokenizer(["abcdef"], cfg)
    assert tok.vocab_size == 5 + 3
    assert tok.token_to_id("c") is not None and tok.token_to_id("d") is None


def test_sample_corpus_is_lazy():
    def endless():
        while True:
            yield "xy"

    assert list(sample_corpus(endless(), max_bytes=7)) == ["xy", "xy", "xy", "x"]


def test_sentencepiece_chunks_are_bounded_and_lossless():
    text = "short\n" * 50 + "L" * 300 + "\n" + "é" * 100 + "\nend"
    chunks = list(_sentences([text], limit=64))
    assert "".join(chunks) == text
    assert all(0 < len(c.encode("utf-8")) <= 64 for c in chunks)
    assert "short\nshort\n" in chunks[0]  # whole lines are grouped, newlines kept


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("texts", [[], ["", ""]])
def test_empty_corpus_is_an_error(kind, texts):
    with pytest.raises(TokenizerError, match="corpus is empty.*lmforge prepare"):
        train_tokenizer(texts, TokenizerConfig(kind=kind, vocab_size=VOCAB_SIZE))


@pytest.mark.parametrize(("kind", "vocab_size", "minimum"), [
    ("byte_bpe", 260, 261), ("sp_unigram", 100, 261), ("sp_bpe", 5, 261),
    ("wordpiece", 5, 6), ("word", 3, 6), ("char", 0, 6),
])
def test_vocab_too_small_for_specials_is_an_error(kind, vocab_size, minimum):
    with pytest.raises(TokenizerError, match=f"vocab_size {vocab_size} is too small.*at least {minimum}.*raise"):
        train_tokenizer(CORPUS, TokenizerConfig(kind=kind, vocab_size=vocab_size))


def test_byte_bpe_smallest_vocab_is_the_byte_alphabet():
    tok = train_tokenizer(CORPUS[:1], TokenizerConfig(kind="byte_bpe", vocab_size=261))
    assert tok.vocab_size == 261
    assert tok.decode(tok.encode(SAMPLE)) == SAMPLE


def test_sentencepiece_vocab_too_small_for_corpus_characters_says_how_many():
    with pytest.raises(TokenizerError, match=r"vocab_size 270 is too small for sp_unigram: .*at least \d+ ids"):
        train_tokenizer(CORPUS, TokenizerConfig(kind="sp_unigram", vocab_size=270))


def test_unknown_kind_is_an_error():
    with pytest.raises(TokenizerError, match="unknown tokenizer kind 'bogus'; use one of byte_bpe"):
        train_tokenizer(CORPUS, TokenizerConfig(kind="bogus"))  # type: ignore[arg-type]


def test_non_positive_max_train_bytes_is_an_error():
    with pytest.raises(TokenizerError, match="set tokenizer.max_train_bytes to a positive number"):
        train_tokenizer(CORPUS, TokenizerConfig(kind="char", max_train_bytes=0))


def test_load_missing_directory(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist; train one with `lmforge tokenizer`"):
        load_tokenizer(tmp_path / "nope")


def test_load_directory_without_metadata(tmp_path, trained):
    trained["byte_bpe"].save(tmp_path)
    (tmp_path / META_FILE).unlink()
    with pytest.raises(TokenizerError, match=f"not an lmforge tokenizer directory \\({META_FILE} is missing\\)"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("kind", ["byte_bpe", "sp_bpe"])
def test_load_directory_without_native_file(tmp_path, trained, kind):
    tok = trained[kind]
    tok.save(tmp_path)
    (tmp_path / tok.native_file).unlink()
    with pytest.raises(TokenizerError, match=f"incomplete: '{tok.native_file}' is missing"):
        load_tokenizer(tmp_path)


def test_load_corrupt_files(tmp_path, trained):
    trained["byte_bpe"].save(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot load .*tokenizer.json.*retrain"):
        load_tokenizer(tmp_path)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(TokenizerError, match=f"cannot read .*{META_FILE}"):
        load_tokenizer(tmp_path)


def test_load_corrupt_sentencepiece_model(tmp_path, trained):
    trained["sp_unigram"].save(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(TokenizerError, match="cannot load .*tokenizer.model"):
        load_tokenizer(tmp_path)


def test_load_unknown_kind(tmp_path, trained):
    trained["char"].save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["kind"] = "mystery"
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(TokenizerError, match="unknown kind 'mystery'"):
        load_tokenizer(tmp_path)
