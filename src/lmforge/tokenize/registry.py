"""Train or load any tokenizer kind: checks the request, then dispatches to its backend."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lmforge.config import TokenizerConfig
from lmforge.errors import TokenizerError
from lmforge.tokenize.base import SPECIAL_TOKENS, Tokenizer, check_native_file, read_meta, sample_corpus
from lmforge.tokenize.hf import HF_KINDS, HFTokenizer, train_hf
from lmforge.tokenize.pretrained import KIND as PRETRAINED_KIND
from lmforge.tokenize.pretrained import PretrainedTokenizer
from lmforge.tokenize.spm import SP_KINDS, SentencePieceTokenizer, train_sentencepiece

KINDS: tuple[str, ...] = HF_KINDS + tuple(SP_KINDS)
# Kinds that load but are not trained here: "pretrained" is a published tokenizer.json imported
# with its own special tokens (`lmforge convert --to lmforge`, `train.init_from` on an HF dir).
LOADABLE_KINDS: tuple[str, ...] = KINDS + (PRETRAINED_KIND,)

_NUM_SPECIAL = len(SPECIAL_TOKENS)
_NUM_BYTES = 256


def _min_vocab_size(kind: str) -> int:
    """Smallest vocab_size that can work: the specials plus the 256 byte symbols (byte-level
    alphabet / byte-fallback pieces) or at least one ordinary token."""
    if kind == "byte_bpe" or kind in SP_KINDS:
        return _NUM_SPECIAL + _NUM_BYTES
    return _NUM_SPECIAL + 1


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    """Train a ``cfg.kind`` tokenizer on at most ``cfg.max_train_bytes`` of ``texts``.

    ``cfg.vocab_size`` counts the five special tokens. A small corpus can give a smaller
    vocabulary than asked (read ``.vocab_size``); WordPiece always keeps every character
    it saw, so it can end up larger.
    """
    if cfg.kind not in KINDS:
        raise TokenizerError(f"unknown tokenizer kind {cfg.kind!r}; use one of {', '.join(KINDS)}")
    minimum = _min_vocab_size(cfg.kind)
    if cfg.vocab_size < minimum:
        why = "5 special tokens + 256 bytes" if minimum > _NUM_SPECIAL + 1 else "5 special tokens + 1"
        raise TokenizerError(
            f"vocab_size {cfg.vocab_size} is too small for {cfg.kind}: it needs at least {minimum} "
            f"({why}); raise tokenizer.vocab_size (a few thousand is typical)")
    corpus = sample_corpus(texts, cfg.max_train_bytes)
    if cfg.kind in SP_KINDS:
        return train_sentencepiece(corpus, cfg)
    return train_hf(corpus, cfg)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer saved by ``Tokenizer.save``; a missing or incomplete dir is a TokenizerError."""
    directory = Path(path)
    meta = read_meta(directory)
    kind = meta.get("kind")
    if kind not in LOADABLE_KINDS:
        raise TokenizerError(
            f"{directory} holds a tokenizer of unknown kind {kind!r} (known: {', '.join(LOADABLE_KINDS)}); "
            "retrain it with `lmforge tokenizer`")
    if kind == PRETRAINED_KIND:
        return PretrainedTokenizer.load(directory, meta)
    cls = SentencePieceTokenizer if kind in SP_KINDS else HFTokenizer
    return cls.load(check_native_file(directory, cls.native_file), kind)


def load_hf_tokenizer(hf_dir: str | Path) -> PretrainedTokenizer:
    """The tokenizer of an HF model directory, as published (kind "pretrained")."""
    return PretrainedTokenizer.from_hf_dir(hf_dir)
