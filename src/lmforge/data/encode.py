"""`lmforge encode`: tokenize prepared documents into token shards (format: see shards.py).

Tokenizing is the slow part, so documents go in batches of ``_BATCH_DOCS`` to
``num_workers`` processes. Each worker loads the tokenizer once (pool initializer) and
returns flat arrays rather than lists of Python ints, which are ~10x cheaper to send back.
Results are collected in submission order, so the shards are byte-identical whatever the
number of workers. At most ``_IN_FLIGHT_PER_WORKER`` batches per worker are outstanding,
which bounds memory on corpora of any size (``Pool.imap`` would read its whole input
ahead). Workers are started with ``spawn``: forking a process that already ran a
multi-threaded tokenizer can deadlock.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import numpy as np

from lmforge.config import EncodeConfig
from lmforge.data.docfile import read_document_file, tmp_sibling, write_json
from lmforge.data.shards import SHARDS_FORMAT, token_dtype, write_index
from lmforge.errors import DataError
from lmforge.tokenize import load_tokenizer

SPLITS = ("train", "val")
_BATCH_DOCS = 64
_IN_FLIGHT_PER_WORKER = 4

# (tokens of the batch back to back, tokens per document, UTF-8 bytes per document)
Encoded = tuple[np.ndarray, np.ndarray, np.ndarray]

_worker_tokenizer: Any = None
_worker_error: Optional[BaseException] = None


def encode_texts(tokenizer: Any, texts: list[str], dtype: np.dtype, eos_id: Optional[int]) -> Encoded:
    """Tokenize a batch of documents into one flat array (plus ``eos_id`` after each, if given)."""
    ids = tokenizer.encode_batch(texts)
    if eos_id is not None:
        ids = [doc_ids + [eos_id] for doc_ids in ids]
    num_tokens = np.fromiter((len(doc_ids) for doc_ids in ids), dtype=np.int64, count=len(ids))
    tokens = np.fromiter((t for doc_ids in ids for t in doc_ids), dtype=dtype, count=int(num_tokens.sum()))
    num_bytes = np.fromiter((len(t.encode("utf-8")) for t in texts), dtype=np.int64, count=len(texts))
    return tokens, num_tokens, num_bytes


def _init_worker(tokenizer_dir: str) -> None:
    # An exception escaping a Pool initializer makes the pool respawn workers forever, so
    # keep it and re-raise it from the first task instead.
    global _worker_tokenizer, _worker_error
    try:
        _worker_tokenizer = load_tokenizer(tokenizer_dir)
    except BaseException as err:  # noqa: BLE001 - re-raised in _encode_in_worker
        _worker_error = err


def _encode_in_worker(texts: list[str], dtype: str, eos_id: Optional[int]) -> Encoded:
    if _worker_error is not None:
        raise _worker_error
    return encode_texts(_worker_tokenizer, texts, np.dtype(dtype), eos_id)


@contextmanager
def _batch_encoder(tokenizer: Any, tokenizer_dir: str, num_workers: int, dtype: np.dtype,
                   eos_id: Optional[int]) -> Iterator[Callable[[Iterable[list[str]]], Iterator[Encoded]]]:
    """Yield a function mapping batches of texts to ``Encoded`` results, in order."""
    num_workers = min(num_workers, os.cpu_count() or 1)  # more processes than cores bring nothing
    if num_workers <= 1:
        yield lambda batches: (encode_texts(tokenizer, texts, dtype, eos_id) for texts in batches)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(num_workers, initializer=_init_worker, initargs=(tokenizer_dir,)) as pool:

        def ordered(batches: Iterable[list[str]]) -> Iterator[Encoded]:
            pending: deque = deque()
            for texts in batches:
                pending.append(pool.apply_async(_encode_in_worker, (texts, dtype.str, eos_id)))
                if len(pending) >= _IN_FLIGHT_PER_WORKER * num_workers:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()

        yield ordered


def _text_batches(path: str) -> Iterator[list[str]]:
    batch: list[str] = []
    for doc in read_document_file(path):
        batch.append(doc.text)
        if len(batch) == _BATCH_DOCS:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode_split(encode: Callable[[Iterable[list[str]]], Iterator[Encoded]], docs_path: str,
                  bin_tmp: str, idx_tmp: str) -> dict[str, int]:
    num_tokens_parts, num_bytes_parts = [], []
    with open(bin_tmp, "wb") as f:
        for tokens, num_tokens, num_bytes in encode(_text_batches(docs_path)):
            f.write(tokens)
            num_tokens_parts.append(num_tokens)
            num_bytes_parts.append(num_bytes)
    doc_num_tokens = np.concatenate(num_tokens_parts) if num_tokens_parts else np.zeros(0, np.int64)
    doc_num_bytes = np.concatenate(num_bytes_parts) if num_bytes_parts else np.zeros(0, np.int64)
    doc_offsets = np.concatenate([[0], np.cumsum(doc_num_tokens)]).astype(np.int64)
    write_index(idx_tmp, doc_offsets, doc_num_bytes)
    return {"num_docs": len(doc_num_bytes), "num_tokens": int(doc_offsets[-1]),
            "num_bytes": int(doc_num_bytes.sum())}


def encode_documents(cfg: EncodeConfig) -> dict[str, Any]:
    """Tokenize ``documents_dir/{train,val}.jsonl`` into ``out_dir/{split}.bin/.idx`` + ``meta.json``.

    Returns the metadata written to ``meta.json``. Raises ``DataError`` when the documents
    are missing or the train split is empty.
    """
    docs_paths = {s: os.path.join(cfg.documents_dir, f"{s}.jsonl") for s in SPLITS}
    for path in docs_paths.values():
        if not os.path.isfile(path):
            raise DataError(f"documents file '{path}' not found: run `lmforge prepare` first "
                            f"or point --documents_dir at its out_dir")
    tokenizer = load_tokenizer(cfg.tokenizer_dir)
    dtype = token_dtype(tokenizer.vocab_size)
    eos_id = tokenizer.require_id("eos", "encode with append_eos (set append_eos false)") if cfg.append_eos else None
    os.makedirs(cfg.out_dir, exist_ok=True)
    outputs = {s: {ext: os.path.join(cfg.out_dir, f"{s}.{ext}") for ext in ("bin", "idx")} for s in SPLITS}
    tmps = {s: {ext: tmp_sibling(p) for ext, p in files.items()} for s, files in outputs.items()}
    splits: dict[str, dict[str, int]] = {}
    try:
        with _batch_encoder(tokenizer, cfg.tokenizer_dir, cfg.num_workers, dtype, eos_id) as encode:
            for s in SPLITS:
                splits[s] = _encode_split(encode, docs_paths[s], tmps[s]["bin"], tmps[s]["idx"])
        if splits["train"]["num_docs"] == 0:
            raise DataError(f"'{docs_paths['train']}' has no documents: re-run `lmforge prepare` on a larger source")
        # meta.json marks complete shards: drop the old one before replacing the files it describes.
        meta_path = os.path.join(cfg.out_dir, "meta.json")
        if os.path.exists(meta_path):
            os.remove(meta_path)
        for s in SPLITS:
            for ext in ("bin", "idx"):
                os.replace(tmps[s][ext], outputs[s][ext])
    finally:
        for files in tmps.values():
            for tmp in files.values():
                if os.path.exists(tmp):
                    os.remove(tmp)
    meta = {
        "format": SHARDS_FORMAT,
        "tokenizer_fingerprint": tokenizer.fingerprint(),
        "tokenizer_kind": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size,
        "dtype": dtype.name,
        "append_eos": cfg.append_eos,
        "eos_id": tokenizer.eos_id,
        "splits": splits,
    }
    write_json(meta_path, meta)
    return meta
