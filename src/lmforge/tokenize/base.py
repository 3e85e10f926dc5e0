"""What every lmforge tokenizer shares: special tokens, the Tokenizer base class, metadata.

Every kind uses the same five special tokens with the same role names, at ids 0-4 in
RoBERTa's order (``<s> <pad> </s> <unk> <mask>``), so code that needs a bos, pad or mask id
never branches on the tokenizer kind. Special tokens are never parsed out of raw text:
a document that literally contains ``</s>`` is encoded as ordinary characters, so training
data cannot inject control tokens and ``decode(encode(text))`` stays exact (the behaviour
of tiktoken's ``encode_ordinary``, which nanochat uses for its training data).

A saved tokenizer is a directory holding the backend's native file (``tokenizer.json`` or
``tokenizer.model``) plus ``lmforge_tokenizer.json`` (kind, format version, special tokens).
The metadata file is written last, so its presence marks a complete save.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from lmforge.errors import TokenizerError

# Insertion order is id order (0..4) for every kind.
SPECIAL_TOKENS: dict[str, str] = {
    "bos": "<s>",
    "pad": "<pad>",
    "eos": "</s>",
    "unk": "<unk>",
    "mask": "<mask>",
}
META_FILE = "lmforge_tokenizer.json"
FORMAT_VERSION = 1


class Tokenizer(abc.ABC):
    """A trained tokenizer: text <-> ids, save/load, and a fingerprint of its vocabulary.

    Subclasses wrap one backend (HF ``tokenizers`` or ``sentencepiece``) and implement the
    abstract methods; decoding with special-token skipping, saving the metadata and the
    fingerprint are shared here. Instances pickle (for tokenizer worker processes) by
    carrying the serialized model.
    """

    native_file: ClassVar[str]

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.special_tokens: dict[str, str] = dict(SPECIAL_TOKENS)
        ids = {}
        for role, token in self.special_tokens.items():
            token_id = self.token_to_id(token)
            if token_id is None:
                raise TokenizerError(
                    f"the {kind} tokenizer has no {role} token {token!r}; retrain it with "
                    "`lmforge tokenizer` (lmforge adds all five special tokens)")
            ids[role] = token_id
        self.bos_id: int = ids["bos"]
        self.eos_id: int = ids["eos"]
        self.pad_id: int = ids["pad"]
        self.unk_id: int = ids["unk"]
        self.mask_id: int = ids["mask"]
        self._special_ids = frozenset(ids.values())
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ backend hooks

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (ids are 0..vocab_size-1)."""

    @abc.abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary entry, or None if ``token`` is not one."""

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; adds no bos/eos."""

    @abc.abstractmethod
    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """``encode`` for many texts, using the backend's parallel batch path."""

    @abc.abstractmethod
    def _decode(self, ids: list[int]) -> str:
        """Text of ``ids``, rendering any special token as its string."""

    @abc.abstractmethod
    def _save_native(self, directory: Path) -> None:
        """Write the backend's own file (``self.native_file``) into ``directory``."""

    @abc.abstractmethod
    def _model_bytes(self) -> bytes:
        """A canonical serialization of the model that is identical after save + load."""

    # ------------------------------------------------------------------ shared behaviour

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids``; with ``skip_special`` the five special tokens (unk too) are dropped."""
        id_list = [int(i) for i in ids]
        if skip_special:
            id_list = [i for i in id_list if i not in self._special_ids]
        return self._decode(id_list)

    def save(self, directory: str | Path) -> None:
        """Write the native file, then ``lmforge_tokenizer.json`` (its presence marks a complete save)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self._save_native(out)
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "special_tokens": self.special_tokens,
            "special_token_ids": {role: self.token_to_id(tok) for role, tok in self.special_tokens.items()},
            "vocab_size": self.vocab_size,
        }
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    def fingerprint(self) -> str:
        """SHA-256 hex digest of kind + model; token shards record it to catch tokenizer mix-ups."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.kind.encode("utf-8") + b"\0")
            digest.update(self._model_bytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"


def read_meta(directory: str | Path) -> dict[str, Any]:
    """Load and check a saved tokenizer's ``lmforge_tokenizer.json``; every problem is a
    TokenizerError saying what to do."""
    path = Path(directory)
    if not path.is_dir():
        raise TokenizerError(
            f"tokenizer directory {path} does not exist; train one with `lmforge tokenizer` "
            "or pass the directory a tokenizer was saved to")
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise TokenizerError(
            f"{path} is not an lmforge tokenizer directory ({META_FILE} is missing); "
            "train one with `lmforge tokenizer` or pass the directory a tokenizer was saved to")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerError(f"cannot read {meta_path}: {err}; retrain the tokenizer to rewrite it") from err
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise TokenizerError(
            f"{meta_path} is not format version {FORMAT_VERSION}; retrain the tokenizer with this lmforge")
    if meta.get("special_tokens") != SPECIAL_TOKENS:
        raise TokenizerError(
            f"{meta_path} lists special tokens {meta.get('special_tokens')!r}, lmforge expects "
            f"{SPECIAL_TOKENS!r}; retrain the tokenizer with `lmforge tokenizer`")
    return meta


def check_native_file(directory: Path, name: str) -> Path:
    """Path of the backend's file in a saved tokenizer; TokenizerError if it is missing."""
    native = directory / name
    if not native.is_file():
        raise TokenizerError(
            f"{directory} is incomplete: {name!r} is missing; retrain the tokenizer "
            "or copy the whole directory it was saved to")
    return native


def sample_corpus(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
    """The leading ``max_bytes`` UTF-8 bytes of ``texts`` (last text cut at a character boundary).

    A prefix rather than a random sample: it is deterministic and needs one pass over a
    stream of unknown length that may not fit in memory. Empty texts are skipped, and an
    all-empty stream raises TokenizerError before any backend sees it.
    """
    if max_bytes <= 0:
        raise TokenizerError(f"max_train_bytes is {max_bytes}; set tokenizer.max_train_bytes to a positive number")

    def bounded() -> Iterator[str]:
        budget = max_bytes
        for text in texts:
            if not text:
                continue
            data = text.encode("utf-8")
            if len(data) >= budget:
                last = data[:budget].decode("utf-8", errors="ignore")
                if last:
                    yield last
                return
            budget -= len(data)
            yield text

    stream = bounded()
    first = next(stream, None)
    if first is None:
        raise TokenizerError(
            "the tokenizer training corpus is empty (no non-empty text); point tokenizer.input at "
            "prepared documents (run `lmforge prepare` first) and check they contain text")

    def chained() -> Iterator[str]:
        yield first
        yield from stream

    return chained()
