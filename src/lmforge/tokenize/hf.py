"""Tokenizers backed by HF ``tokenizers``: byte-level BPE, WordPiece, word-level, character.

- byte_bpe: BPE (Sennrich et al. 2016) over bytes mapped to printable characters, as in
  GPT-2 (Radford et al. 2019). The 256 byte symbols are the initial alphabet, so every
  string encodes without <unk> and decodes back exactly (spaces, tabs, newlines,
  indentation, emoji). No prefix space is added: ``encode(a) + encode(b)`` decodes to a + b.
- wordpiece: WordPiece (Schuster & Nakajima 2012; Wu et al. 2016) with BERT's
  normalizer (control characters dropped, every whitespace run becomes one space, CJK
  characters isolated; lowercase only if asked) and pre-tokenizer (split on whitespace,
  isolate each punctuation character, "_" included). Lossy: ``decode`` joins the words with single
  spaces, so ``"f(x):\\n    y"`` comes back as ``"f ( x ) : y"``; a word with an unseen
  character becomes <unk>. Training is not reproducible run to run: HF's trainer
  numbers the "##" pieces in hash-map order, which breaks ties between equally frequent
  merges differently (huggingface/tokenizers#1794); save the tokenizer, don't retrain it.
- word: one id per whole word (whitespace split, each punctuation character isolated),
  unseen words -> <unk>. Same lossiness as WordPiece.
- char: one id per character seen at least ``min_frequency`` times (most frequent first,
  up to ``vocab_size``), others -> <unk>. Exact on text made of known characters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFBackend

from lmforge.config import TokenizerConfig
from lmforge.errors import TokenizerError
from lmforge.tokenize.base import SPECIAL_TOKENS, Tokenizer

_SPECIALS = list(SPECIAL_TOKENS.values())
_UNK = SPECIAL_TOKENS["unk"]


def _byte_bpe(cfg: TokenizerConfig) -> tuple[HFBackend, Any]:
    backend = HFBackend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    return backend, trainer


def _wordpiece(cfg: TokenizerConfig) -> tuple[HFBackend, Any]:
    backend = HFBackend(models.WordPiece(unk_token=_UNK))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=cfg.lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # cleanup=False: BERT's cleanup glues some punctuation back ("a ." -> "a.") but not
    # all, which makes the output harder to predict without making it exact.
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=_SPECIALS,
        continuing_subword_prefix="##", show_progress=False)
    return backend, trainer


def _word(cfg: TokenizerConfig) -> tuple[HFBackend, Any]:
    backend = HFBackend(models.WordLevel(unk_token=_UNK))
    if cfg.lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")])
    # No decoder: HF joins tokens with single spaces.
    trainer = trainers.WordLevelTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=_SPECIALS,
        show_progress=False)
    return backend, trainer


def _char(cfg: TokenizerConfig) -> tuple[HFBackend, Any]:
    # Each character (newline included) is its own "word"; the word-level trainer then
    # keeps the most frequent ones, and Fuse concatenates them back without separators.
    backend = HFBackend(models.WordLevel(unk_token=_UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, special_tokens=_SPECIALS,
        show_progress=False)
    return backend, trainer


_BUILDERS: dict[str, Callable[[TokenizerConfig], tuple[HFBackend, Any]]] = {
    "byte_bpe": _byte_bpe,
    "wordpiece": _wordpiece,
    "word": _word,
    "char": _char,
}
HF_KINDS = tuple(_BUILDERS)


class BackendTokenizer(Tokenizer):
    """What every Tokenizer over an HF ``tokenizers.Tokenizer`` shares: the backend calls
    (`HFTokenizer` for the kinds lmforge trains, `PretrainedTokenizer` for published files)."""

    native_file = "tokenizer.json"

    def _attach(self, backend: HFBackend) -> None:
        # Treat "<s>" etc. inside raw text as plain characters (see base.py). This flag is
        # not stored in tokenizer.json, so it is set on every construction, load and unpickle.
        backend.encode_special_tokens = True
        self._backend = backend
        # encode_batch_fast (tokenizers >= 0.21) skips computing offsets we never use.
        self._encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [enc.ids for enc in self._encode_batch(list(texts), add_special_tokens=False)]

    def _decode(self, ids: list[int]) -> str:
        return self._backend.decode(ids, skip_special_tokens=False)


class HFTokenizer(BackendTokenizer):
    """A Tokenizer over an HF ``tokenizers.Tokenizer`` (native file: ``tokenizer.json``)."""

    def __init__(self, kind: str, backend: HFBackend) -> None:
        self._attach(backend)
        super().__init__(kind)

    @classmethod
    def load(cls, path: Path, kind: str) -> HFTokenizer:
        """Read a native file written by ``save``; unreadable content is a TokenizerError."""
        try:
            backend = HFBackend.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exception on bad JSON
            raise TokenizerError(f"cannot load {path}: {err}; retrain the tokenizer to rewrite it") from err
        return cls(kind, backend)

    def _save_native(self, directory: Path) -> None:
        self._backend.save(str(directory / self.native_file))

    def _model_bytes(self) -> bytes:
        # Canonical JSON: the same model gives the same bytes whatever the file's formatting.
        canonical = json.dumps(json.loads(self._backend.to_str()), sort_keys=True, ensure_ascii=False)
        return canonical.encode("utf-8")

    def __getstate__(self) -> dict[str, str]:
        return {"kind": self.kind, "json": self._backend.to_str()}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["kind"], HFBackend.from_str(state["json"]))  # type: ignore[misc]


def train_hf(corpus: Iterator[str], cfg: TokenizerConfig) -> HFTokenizer:
    """Train an HF-backed kind on ``corpus`` (already sampled and checked non-empty)."""
    backend, trainer = _BUILDERS[cfg.kind](cfg)
    backend.train_from_iterator(corpus, trainer=trainer)
    return HFTokenizer(cfg.kind, backend)
