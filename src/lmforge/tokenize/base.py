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
import re
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

    def __init__(self, kind: str, special_tokens: dict[str, str] | None = None) -> None:
        """Resolve the special-token roles to ids.

        ``special_tokens`` maps role -> token string. lmforge's own kinds leave it None and
        get the five ``SPECIAL_TOKENS`` (all required). An imported tokenizer ("pretrained")
        passes the roles it has (bos/eos/pad/unk/mask/cls/sep, any subset); a role it lacks
        has id None, and code that needs it calls ``require_id``.
        """
        self.kind = kind
        required = special_tokens is None
        self.special_tokens: dict[str, str] = dict(SPECIAL_TOKENS if special_tokens is None else special_tokens)
        ids: dict[str, int] = {}
        for role, token in self.special_tokens.items():
            token_id = self.token_to_id(token)
            if token_id is None:
                if required:
                    raise TokenizerError(
                        f"the {kind} tokenizer has no {role} token {token!r}; retrain it with "
                        "`lmforge tokenizer` (lmforge adds all five special tokens)")
                raise TokenizerError(
                    f"the {kind} tokenizer maps role {role} to {token!r}, which is not in its vocabulary; "
                    "fix tokenizer_config.json / special_tokens_map.json")
            ids[role] = token_id
        self.role_ids: dict[str, int] = ids
        self.bos_id: int | None = ids.get("bos")
        self.eos_id: int | None = ids.get("eos")
        self.unk_id: int | None = ids.get("unk")
        self.mask_id: int | None = ids.get("mask")
        # Many pretrained tokenizers (GPT-2, LLaMA) have no pad token: padding positions are
        # masked out of attention and loss anyway, so any id works; eos is HF's usual choice.
        pad = ids.get("pad", self.eos_id)
        self.pad_id: int = pad if pad is not None else 0
        self._special_ids = frozenset(ids.values()) | frozenset(self._extra_special_ids())
        self._fingerprint: str | None = None

    def _extra_special_ids(self) -> Iterable[int]:
        """Special/control ids beyond the role tokens (an imported tokenizer's added specials)."""
        return ()

    @property
    def special_ids(self) -> frozenset[int]:
        """Every special/control token id (role tokens and, for imported tokenizers, all other
        added special tokens such as ``<|eot_id|>`` or T5's ``<extra_id_N>``)."""
        return self._special_ids

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template the tokenizer was published with (None for lmforge's kinds)."""
        return None

    def require_id(self, role: str, needed_for: str) -> int:
        """The id of ``role`` (bos/eos/pad/unk/mask/cls/sep); a TokenizerError naming
        ``needed_for`` if this tokenizer has no such token."""
        if role == "pad":
            return self.pad_id
        token_id = self.role_ids.get(role)
        if token_id is None:
            have = ", ".join(f"{r}={t!r}" for r, t in self.special_tokens.items()) or "none"
            raise TokenizerError(
                f"{needed_for} needs a {role} token, but this {self.kind} tokenizer has none "
                f"(its special tokens: {have}); use a tokenizer with one, or a task that does not need it")
        return token_id

    def encode_template(self, text: str) -> list[int]:
        """Ids of text written by a template (a chat template): special-token strings in it
        (``</s>``, ``<|eot_id|>``, ``[CLS]``) become their ids, the rest is ``encode``d.

        Only for template output: raw data must go through ``encode`` so it cannot inject
        control tokens (see the module docstring).
        """
        specials = sorted(set(self.special_tokens.values()) | set(self._extra_special_tokens()),
                          key=len, reverse=True)  # longest first: "<|eot_id|>" before "<|"
        if not specials:
            return self.encode(text)
        ids: list[int] = []
        for i, piece in enumerate(re.split("(" + "|".join(map(re.escape, specials)) + ")", text)):
            if i % 2:  # a captured special token
                token_id = self.token_to_id(piece)
                assert token_id is not None
                ids.append(token_id)
            elif piece:
                ids.extend(self.encode(piece))
        return ids

    def _extra_special_tokens(self) -> Iterable[str]:
        """Strings of the special tokens beyond the roles (see ``_extra_special_ids``)."""
        return ()

    def frame(self, ids: list[int]) -> list[int]:
        """One sequence framed as the model was pretrained: lmforge's kinds give
        ``[bos] + ids + [eos]``; an imported tokenizer applies its own post-processor."""
        out = list(ids)
        if self.bos_id is not None:
            out.insert(0, self.bos_id)
        if self.eos_id is not None:
            out.append(self.eos_id)
        return out

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
        """Text of ``ids``; with ``skip_special`` every special token (unk too) is dropped."""
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
    # An imported tokenizer ("pretrained") keeps its own special tokens, mapped to roles.
    if meta.get("kind") != "pretrained" and meta.get("special_tokens") != SPECIAL_TOKENS:
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
