"""Token shards on disk: ``{split}.bin``, ``{split}.idx`` and ``meta.json``, and their reader.

``{split}.bin`` is every document's token ids back to back, little-endian ``uint16`` when
the vocabulary fits (< 65500 ids, leaving headroom below 2**16) else ``uint32``; no header,
so it can be memory-mapped directly (as nanoGPT and Megatron do).

``{split}.idx`` holds the document boundaries, all little-endian::

    magic          8 bytes   b"LMFIDX\\x00\\x01"   (the last byte is the format version)
    num_docs       uint64
    doc_offsets    int64[num_docs + 1]  token offset of each document in .bin;
                                        doc_offsets[0] == 0, doc_offsets[-1] == num_tokens
    doc_num_bytes  int64[num_docs]      UTF-8 bytes of each document's text (for bits per byte)

``meta.json``: ``{"format": "lmforge-shards-v1", "tokenizer_fingerprint", "tokenizer_kind",
"vocab_size", "dtype", "append_eos", "eos_id", "splits": {split: {num_docs, num_tokens,
num_bytes}}}``. It is written last, so its presence means the shards are complete.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

import numpy as np

from lmforge.errors import DataError

SHARDS_FORMAT = "lmforge-shards-v1"
IDX_MAGIC = b"LMFIDX\x00\x01"
_IDX_HEADER_BYTES = len(IDX_MAGIC) + 8
_INT64 = np.dtype("<i8")
# Keep uint16 strictly below its 65536 limit so a few added special tokens still fit.
UINT16_MAX_VOCAB = 65500


class _Fingerprinted(Protocol):
    def fingerprint(self) -> str: ...


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` (2 bytes per token) when the vocabulary fits, else ``uint32``."""
    return np.dtype("<u2") if vocab_size < UINT16_MAX_VOCAB else np.dtype("<u4")


def write_index(path: str, doc_offsets: np.ndarray, doc_num_bytes: np.ndarray) -> None:
    """Write an ``.idx`` file (format in the module docstring)."""
    num_docs = len(doc_num_bytes)
    assert len(doc_offsets) == num_docs + 1
    with open(path, "wb") as f:
        f.write(IDX_MAGIC)
        f.write(np.uint64(num_docs).astype("<u8").tobytes())
        f.write(np.asarray(doc_offsets, dtype=_INT64).tobytes())
        f.write(np.asarray(doc_num_bytes, dtype=_INT64).tobytes())


def read_index(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(doc_offsets, doc_num_bytes)`` of an ``.idx`` file; DataError if missing or corrupt."""
    redo = "re-run `lmforge encode`"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise DataError(f"cannot read index '{path}' ({err.strerror}): {redo}") from None
    if len(data) < _IDX_HEADER_BYTES or data[: len(IDX_MAGIC)] != IDX_MAGIC:
        raise DataError(f"'{path}' is not an lmforge index file (bad header): {redo}")
    num_docs = int(np.frombuffer(data, dtype="<u8", count=1, offset=len(IDX_MAGIC))[0])
    expected = _IDX_HEADER_BYTES + _INT64.itemsize * (2 * num_docs + 1)
    if len(data) != expected:
        raise DataError(f"index '{path}' has {len(data)} bytes, expected {expected} for {num_docs} documents: {redo}")
    doc_offsets = np.frombuffer(data, dtype=_INT64, count=num_docs + 1, offset=_IDX_HEADER_BYTES)
    doc_num_bytes = np.frombuffer(data, dtype=_INT64, count=num_docs,
                                  offset=_IDX_HEADER_BYTES + _INT64.itemsize * (num_docs + 1))
    if doc_offsets[0] != 0 or np.any(np.diff(doc_offsets) < 0):
        raise DataError(f"index '{path}' has invalid document offsets: {redo}")
    return doc_offsets.astype(np.int64), doc_num_bytes.astype(np.int64)


def read_meta(shards_dir: str) -> dict[str, Any]:
    """The shards' ``meta.json``; DataError if the directory holds no (complete) shards."""
    path = os.path.join(shards_dir, "meta.json")
    if not os.path.isfile(path):
        raise DataError(f"no token shards in '{shards_dir}' (meta.json missing): run `lmforge encode` "
                        f"or point --train.shards_dir at its out_dir")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError:
        raise DataError(f"'{path}' is not valid JSON: re-run `lmforge encode`") from None
    if not isinstance(meta, dict) or meta.get("format") != SHARDS_FORMAT:
        raise DataError(f"'{path}' is not {SHARDS_FORMAT} metadata: re-run `lmforge encode` with this lmforge")
    return meta


class TokenShard:
    """One split of token shards, memory-mapped: ``tokens`` stays on disk until indexed.

    Attributes: ``tokens`` (1-D memmap), ``doc_offsets`` (int64, num_docs + 1),
    ``doc_num_bytes`` (int64, num_docs), ``num_tokens``, ``num_docs``, ``meta`` (meta.json).
    """

    def __init__(self, shards_dir: str, split: str):
        self.meta = read_meta(shards_dir)
        splits = self.meta.get("splits", {})
        if split not in splits:
            raise DataError(f"shards in '{shards_dir}' have no split '{split}' "
                            f"(they have: {', '.join(sorted(splits))}): pick one of those")
        self.split = split
        self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self.doc_offsets, self.doc_num_bytes = read_index(os.path.join(shards_dir, f"{split}.idx"))
        self.num_docs = len(self.doc_num_bytes)
        self.num_tokens = int(self.doc_offsets[-1])
        bin_path = os.path.join(shards_dir, f"{split}.bin")
        if not os.path.isfile(bin_path):
            raise DataError(f"token file '{bin_path}' is missing: re-run `lmforge encode`")
        num_bytes = os.path.getsize(bin_path)
        if num_bytes != self.num_tokens * self.dtype.itemsize:
            raise DataError(f"'{bin_path}' has {num_bytes} bytes but its index describes {self.num_tokens} "
                            f"{self.dtype.name} tokens: the shards are incomplete, re-run `lmforge encode`")
        expected = splits[split]
        if (expected.get("num_docs"), expected.get("num_tokens")) != (self.num_docs, self.num_tokens):
            raise DataError(f"'{split}' shards in '{shards_dir}' do not match meta.json "
                            f"(files from different runs?): re-run `lmforge encode`")
        # np.memmap cannot map an empty file; an empty split is still a valid (empty) array.
        self.tokens = (np.memmap(bin_path, dtype=self.dtype, mode="r") if self.num_tokens
                       else np.zeros(0, dtype=self.dtype))

    def __len__(self) -> int:
        return self.num_docs

    def doc_tokens(self, i: int) -> np.ndarray:
        """Token ids of document ``i`` (a view into the memmap)."""
        return self.tokens[self.doc_offsets[i]: self.doc_offsets[i + 1]]


def check_tokenizer_matches(shards_dir: str, tokenizer: _Fingerprinted) -> None:
    """Raise DataError unless ``tokenizer`` is the one the shards were encoded with.

    Training on shards from another tokenizer silently learns garbage, so the fingerprint
    (a digest of the saved vocabulary/model) must match exactly.
    """
    meta = read_meta(shards_dir)
    expected, actual = meta.get("tokenizer_fingerprint"), tokenizer.fingerprint()
    if expected != actual:
        raise DataError(f"shards in '{shards_dir}' were encoded with another tokenizer "
                        f"(fingerprint {str(expected)[:12]}, this one is {actual[:12]}): "
                        f"re-run `lmforge encode` with this tokenizer or use the matching tokenizer")
