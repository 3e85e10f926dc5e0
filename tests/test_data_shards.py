"""encode_documents and TokenShard: round trip, dtype, counts, worker-count invariance, corrupt files."""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest

from lmforge.config import EncodeConfig, PrepareConfig, SourceConfig, TokenizerConfig
from lmforge.data import TokenShard, check_tokenizer_matches, encode_documents, prepare, token_dtype
from lmforge.data import encode as encode_module
from lmforge.errors import DataError, TokenizerError
from lmforge.tokenize import load_tokenizer, train_tokenizer

WORDS = ["def", "return", "café", "naïve", "x", "+", "数据", "🙂", "\t", "\n", "None", "(", ")", "  "]


def texts(num_docs: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) + f" doc{i}" for i in range(num_docs)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """150 JSONL documents (more than two worker batches of 64), prepared and a byte BPE trained."""
    base = tmp_path_factory.mktemp("shards")
    rows = texts(150)
    (base / "raw.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows), encoding="utf-8")
    stats = prepare(PrepareConfig(source=SourceConfig(kind="jsonl", paths=[str(base / "raw.jsonl")]),
                                  out_dir=str(base / "docs"), val_fraction=0.2))
    tokenizer = train_tokenizer(rows, TokenizerConfig(kind="byte_bpe", vocab_size=320, min_frequency=1))
    tokenizer.save(base / "tok")
    meta = encode_documents(EncodeConfig(documents_dir=str(base / "docs"), tokenizer_dir=str(base / "tok"),
                                         out_dir=str(base / "shards"), num_workers=1))
    return {"base": base, "stats": stats, "meta": meta, "tokenizer": load_tokenizer(base / "tok")}


def split_texts(base, split: str) -> list[str]:
    with open(base / "docs" / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def test_round_trip_and_counts(corpus):
    base, tokenizer, meta = corpus["base"], corpus["tokenizer"], corpus["meta"]
    assert meta["format"] == "lmforge-shards-v1"
    assert meta["dtype"] == "uint16" and meta["tokenizer_kind"] == "byte_bpe"
    assert meta["vocab_size"] == tokenizer.vocab_size
    assert meta["tokenizer_fingerprint"] == tokenizer.fingerprint()
    assert json.loads((base / "shards" / "meta.json").read_text()) == meta
    for split in ("train", "val"):
        shard = TokenShard(str(base / "shards"), split)
        originals = split_texts(base, split)
        assert shard.num_docs == len(originals) == corpus["stats"]["splits"][split]["num_docs"] > 0
        assert shard.tokens.dtype == np.uint16 and isinstance(shard.tokens, np.memmap)
        for i, text in enumerate(originals):
            ids = shard.doc_tokens(i).tolist()
            assert ids[-1] == tokenizer.eos_id and tokenizer.eos_id not in ids[:-1]
            assert ids[:-1] == tokenizer.encode(text)
            assert tokenizer.decode(ids) == text
        assert shard.doc_num_bytes.tolist() == [len(t.encode("utf-8")) for t in originals]
        info = meta["splits"][split]
        assert info["num_docs"] == shard.num_docs
        assert info["num_tokens"] == shard.num_tokens == len(shard.tokens) == shard.doc_offsets[-1]
        assert info["num_tokens"] == sum(len(tokenizer.encode(t)) + 1 for t in originals)
        assert info["num_bytes"] == corpus["stats"]["splits"][split]["num_bytes"]
    assert not [n for n in os.listdir(base / "shards") if n.startswith(".")]  # no temp files left


def test_two_workers_give_identical_shards(corpus):
    base = corpus["base"]
    meta = encode_documents(EncodeConfig(documents_dir=str(base / "docs"), tokenizer_dir=str(base / "tok"),
                                         out_dir=str(base / "shards2"), num_workers=2))
    assert meta == corpus["meta"]
    for name in ("train.bin", "train.idx", "val.bin", "val.idx", "meta.json"):
        assert (base / "shards2" / name).read_bytes() == (base / "shards" / name).read_bytes(), name


def test_without_eos(corpus, tmp_path):
    base = corpus["base"]
    meta = encode_documents(EncodeConfig(documents_dir=str(base / "docs"), tokenizer_dir=str(base / "tok"),
                                         out_dir=str(tmp_path), num_workers=1, append_eos=False))
    for split in ("train", "val"):
        with_eos = corpus["meta"]["splits"][split]
        assert meta["splits"][split]["num_tokens"] == with_eos["num_tokens"] - with_eos["num_docs"]
    shard = TokenShard(str(tmp_path), "train")
    assert shard.doc_tokens(0).tolist() == corpus["tokenizer"].encode(split_texts(base, "train")[0])


def test_dtype_choice():
    assert token_dtype(320) == np.uint16
    assert token_dtype(65499) == np.uint16
    assert token_dtype(65500) == np.uint32
    assert token_dtype(128_256) == np.uint32


class BigVocabTokenizer:
    """Stand-in with a 100k vocabulary: one id per character, above the uint16 range."""

    kind, vocab_size, eos_id = "char", 100_000, 2

    def require_id(self, role, needed_for):
        return getattr(self, f"{role}_id")

    def encode_batch(self, batch):
        return [[70_000 + ord(c) % 30_000 for c in text] for text in batch]

    def fingerprint(self):
        return "f" * 64


def test_large_vocabulary_uses_uint32(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(encode_module, "load_tokenizer", lambda path: BigVocabTokenizer())
    meta = encode_documents(EncodeConfig(documents_dir=str(corpus["base"] / "docs"), tokenizer_dir="unused",
                                         out_dir=str(tmp_path), num_workers=1))
    assert meta["dtype"] == "uint32"
    shard = TokenShard(str(tmp_path), "val")
    first = split_texts(corpus["base"], "val")[0]
    assert shard.tokens.dtype == np.uint32
    assert shard.doc_tokens(0).tolist() == [70_000 + ord(c) % 30_000 for c in first] + [2]
    assert os.path.getsize(tmp_path / "val.bin") == 4 * shard.num_tokens


def test_tokenizer_mismatch(corpus, tmp_path):
    shards = str(corpus["base"] / "shards")
    check_tokenizer_matches(shards, corpus["tokenizer"])
    other = train_tokenizer(texts(20, seed=1), TokenizerConfig(kind="char", vocab_size=100, min_frequency=1))
    with pytest.raises(DataError, match="encoded with another tokenizer"):
        check_tokenizer_matches(shards, other)


def test_missing_inputs(tmp_path, corpus):
    with pytest.raises(DataError, match=r"documents file '.*train.jsonl' not found: run `lmforge prepare`"):
        encode_documents(EncodeConfig(documents_dir=str(tmp_path / "none"), tokenizer_dir=str(corpus["base"] / "tok"),
                                      out_dir=str(tmp_path / "out")))
    with pytest.raises(DataError, match=r"no token shards in .*meta.json missing.*lmforge encode"):
        TokenShard(str(tmp_path), "train")
    with pytest.raises(DataError, match=r"no split 'test' \(they have: train, val\)"):
        TokenShard(str(corpus["base"] / "shards"), "test")


@pytest.mark.parametrize("damage, words", [
    (lambda d: os.truncate(d / "train.bin", os.path.getsize(d / "train.bin") - 2), "bytes but its index describes"),
    (lambda d: os.remove(d / "train.bin"), "is missing"),
    (lambda d: os.remove(d / "train.idx"), "cannot read index"),
    (lambda d: (d / "train.idx").write_bytes(b"NOTANIDX" + (d / "train.idx").read_bytes()[8:]), "bad header"),
    (lambda d: os.truncate(d / "train.idx", os.path.getsize(d / "train.idx") - 8), "expected"),
    (lambda d: shutil.copy(d / "val.idx", d / "train.idx"), "bytes but its index describes"),
    (lambda d: (d / "meta.json").write_text("{"), "not valid JSON"),
])
def test_corrupt_shards(corpus, tmp_path, damage, words):
    shards = tmp_path / "copy"
    shutil.copytree(corpus["base"] / "shards", shards)
    TokenShard(str(shards), "train")
    damage(shards)
    with pytest.raises(DataError, match=words):
        TokenShard(str(shards), "train")


def test_empty_val_split_is_readable(tmp_path):
    (tmp_path / "one.txt").write_text("only document", encoding="utf-8")
    prepare(PrepareConfig(source=SourceConfig(kind="text", paths=[str(tmp_path / "one.txt")]),
                          out_dir=str(tmp_path / "docs")))
    tokenizer = train_tokenizer(["only document"], TokenizerConfig(kind="char", vocab_size=50, min_frequency=1))
    tokenizer.save(tmp_path / "tok")
    meta = encode_documents(EncodeConfig(documents_dir=str(tmp_path / "docs"), tokenizer_dir=str(tmp_path / "tok"),
                                         out_dir=str(tmp_path / "shards"), num_workers=1))
    assert meta["splits"]["val"] == {"num_docs": 0, "num_tokens": 0, "num_bytes": 0}
    val = TokenShard(str(tmp_path / "shards"), "val")
    assert val.num_tokens == 0 and len(val.tokens) == 0 and val.doc_offsets.tolist() == [0]
    assert TokenShard(str(tmp_path / "shards"), "train").num_tokens == len("only document") + 1


def test_worker_keeps_tokenizer_load_error_for_the_first_task(tmp_path, monkeypatch):
    # An exception escaping a Pool initializer would make the pool respawn workers forever.
    monkeypatch.setattr(encode_module, "_worker_error", None)
    encode_module._init_worker(str(tmp_path / "no-tokenizer"))
    with pytest.raises(TokenizerError, match="no-tokenizer"):
        encode_module._encode_in_worker(["text"], "<u2", None)
