"""SentencePiece tokenizers: Unigram (Kudo 2018) and BPE, via the ``sentencepiece`` library
(Kudo & Richardson 2018). Native file: ``tokenizer.model``.

Settings chosen so source code survives a round trip:
- ``normalization_rule_name="identity"``, ``remove_extra_whitespaces=False``: no NFKC, no
  whitespace collapsing, so indentation, tabs and blank lines are kept;
- ``allow_whitespace_only_pieces=True``: runs of spaces (indentation) become single pieces;
- ``add_dummy_prefix=False``: no space is prepended, so ``decode(encode(x)) == x`` and
  encodings of adjacent texts concatenate;
- ``byte_fallback=True`` with ``character_coverage=0.9995``: rare characters are spelled
  as UTF-8 byte pieces instead of <unk>. This costs 256 ids, so ``vocab_size`` must exceed
  261 plus the number of distinct common characters.

Known lossiness: sentencepiece writes a space as U+2581 (LOWER ONE EIGHTH BLOCK) internally,
so a literal U+2581 in the input decodes as a space. Everything else, control characters
and ``\\r`` included, round-trips.

Training input: sentencepiece skips any "sentence" longer than ``max_sentence_length``
bytes, and Python files are long, so documents are fed as chunks of whole lines of at most
``_CHUNK_BYTES`` (a longer line is cut). Newlines stay inside the chunks, so pieces such
as ``"):\\n"`` can be learned.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece

from lmforge.config import TokenizerConfig
from lmforge.errors import TokenizerError
from lmforge.tokenize.base import SPECIAL_TOKENS, Tokenizer

SP_KINDS = {"sp_unigram": "unigram", "sp_bpe": "bpe"}
_CHUNK_BYTES = 4096
# Far more than max_train_bytes / _CHUNK_BYTES for any sensible budget; sentencepiece
# samples this many sentences if there are more, so its memory stays bounded.
_MAX_SENTENCES = 2_000_000


def _sentences(texts: Iterable[str], limit: int = _CHUNK_BYTES) -> Iterator[str]:
    """Chunks of whole lines, each at most ``limit`` UTF-8 bytes; concatenated they give the texts."""
    for text in texts:
        chunk: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            num_bytes = len(line.encode("utf-8"))
            if size + num_bytes > limit and chunk:
                yield "".join(chunk)
                chunk, size = [], 0
            if num_bytes > limit:
                step = limit // 4  # a character is at most 4 UTF-8 bytes
                yield from (line[i:i + step] for i in range(0, len(line), step))
                continue
            chunk.append(line)
            size += num_bytes
        if chunk:
            yield "".join(chunk)


class SentencePieceTokenizer(Tokenizer):
    """A Tokenizer over a ``sentencepiece`` model (native file: ``tokenizer.model``)."""

    native_file = "tokenizer.model"

    def __init__(self, kind: str, model_proto: bytes) -> None:
        self._model_proto = model_proto
        self._sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        super().__init__(kind)

    @classmethod
    def load(cls, path: Path, kind: str) -> SentencePieceTokenizer:
        """Read a native file written by ``save``; unreadable content is a TokenizerError."""
        model_proto = path.read_bytes()
        try:
            return cls(kind, model_proto)
        except RuntimeError as err:
            raise TokenizerError(f"cannot load {path}: {err}; retrain the tokenizer to rewrite it") from err

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def token_to_id(self, token: str) -> int | None:
        token_id = self._sp.piece_to_id(token)  # returns unk_id for unknown pieces
        return token_id if self._sp.id_to_piece(token_id) == token else None

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text, out_type=int)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return self._sp.encode(list(texts), out_type=int)

    def _decode(self, ids: list[int]) -> str:
        # sentencepiece renders control tokens as "" and <unk> as " ⁇ ": decode the runs
        # between special ids and put the special token strings in between ourselves.
        parts: list[str] = []
        run: list[int] = []
        for token_id in ids:
            if token_id in self._special_ids:
                parts.append(self._sp.decode(run))
                parts.append(self._sp.id_to_piece(token_id))
                run = []
            else:
                run.append(token_id)
        parts.append(self._sp.decode(run))
        return "".join(parts)

    def _save_native(self, directory: Path) -> None:
        (directory / self.native_file).write_bytes(self._model_proto)

    def _model_bytes(self) -> bytes:
        return self._model_proto

    def __getstate__(self) -> dict[str, object]:
        return {"kind": self.kind, "model_proto": self._model_proto}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["kind"], state["model_proto"])  # type: ignore[misc, arg-type]


def train_sentencepiece(corpus: Iterator[str], cfg: TokenizerConfig) -> SentencePieceTokenizer:
    """Train a SentencePiece Unigram or BPE model on ``corpus`` (already sampled, non-empty)."""
    ids = {role: i for i, role in enumerate(SPECIAL_TOKENS)}
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=_sentences(corpus),
            model_writer=model,  # the model comes back in memory: no temporary files
            model_type=SP_KINDS[cfg.kind],
            vocab_size=cfg.vocab_size,
            hard_vocab_limit=False,  # a small corpus gives a smaller vocabulary, not an error
            character_coverage=0.9995,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            add_dummy_prefix=False,
            max_sentence_length=2 * _CHUNK_BYTES,
            input_sentence_size=_MAX_SENTENCES,
            shuffle_input_sentence=True,
            bos_id=ids["bos"], eos_id=ids["eos"], pad_id=ids["pad"], unk_id=ids["unk"],
            bos_piece=SPECIAL_TOKENS["bos"], eos_piece=SPECIAL_TOKENS["eos"],
            pad_piece=SPECIAL_TOKENS["pad"], unk_piece=SPECIAL_TOKENS["unk"],
            # A control symbol, not user-defined: literal "<mask>" in text is not matched.
            control_symbols=[SPECIAL_TOKENS["mask"]],
            num_threads=min(os.cpu_count() or 1, 16),
            minloglevel=2,  # only errors; the trainer's progress log is very long
        )
    except RuntimeError as err:
        raise TokenizerError(_explain(err, cfg)) from err
    return SentencePieceTokenizer(cfg.kind, model.getvalue())


def _explain(err: RuntimeError, cfg: TokenizerConfig) -> str:
    """Turn sentencepiece's CHECK failure into one line that says what to change."""
    match = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", str(err))
    if match:
        return (f"vocab_size {cfg.vocab_size} is too small for {cfg.kind}: the corpus needs at least "
                f"{match.group(2)} ids (5 special tokens, 256 byte-fallback pieces and its common "
                "characters); raise tokenizer.vocab_size")
    return f"sentencepiece failed to train {cfg.kind}: {err}"
