"""Where a pipeline run writes: output shards per split, rejects, and its work directory.

    DIR/train/part-00000.jsonl     kept documents {id, text, meta}, one part per input shard
                                   that kept any
    DIR/val/part-00000.jsonl       (or .parquet, with meta as a JSON string column)
    DIR/rejects/part-00000.jsonl   dropped documents with step, reason and detail
    DIR/stats.json                 the merged books of the run
    DIR/.work/                     stage files, fingerprints, decisions, completion markers

Every file is written under a temporary name and renamed into place; a shard's completion
marker is written last, so a shard with a marker is complete and a rerun skips it.
The val split hashes the document text exactly as `lmforge prepare` does, so
`lmforge prepare --source.kind jsonl --source.paths DIR/train DIR/val` with the same
``val_fraction`` and ``split_seed`` reproduces the same split.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from lmforge.data.docfile import AtomicJsonlWriter, tmp_sibling
from lmforge.data.document import Document
from lmforge.errors import ConfigError

SPLITS = ("train", "val")
_PARQUET_BATCH_ROWS = 1024


def part_name(shard: int) -> str:
    return f"part-{shard:05d}"


def stage_dir(out_dir: str, stage: int) -> str:
    return os.path.join(out_dir, ".work", f"stage-{stage}")


class _ParquetWriter:
    """Parquet with columns id, text, meta (JSON text: document metadata is free-form)."""

    def __init__(self, path: str):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("output.format parquet needs pyarrow: pip install 'lmforge[parquet]'") from None
        self.pa, self.pq = pa, pq
        self.path, self.tmp = path, tmp_sibling(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("meta", pa.string())])
        self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.rows: list[Document] = []

    def write(self, doc: Document) -> None:
        self.rows.append(doc)
        if len(self.rows) >= _PARQUET_BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            columns = {"id": [d.id for d in self.rows], "text": [d.text for d in self.rows],
                       "meta": [json.dumps(d.meta, ensure_ascii=False) for d in self.rows]}
            self.writer.write_table(self.pa.table(columns, schema=self.schema))
            self.rows = []

    def commit(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        try:
            self.writer.close()
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


def open_split_writer(out_dir: str, split: str, shard: int, fmt: str):
    suffix = ".parquet" if fmt == "parquet" else ".jsonl"
    path = os.path.join(out_dir, split, part_name(shard) + suffix)
    return _ParquetWriter(path) if fmt == "parquet" else AtomicJsonlWriter(path)


class RejectsWriter:
    """Dropped documents with where and why they were dropped (``output.write_rejects``)."""

    def __init__(self, out_dir: str, shard: int, stage: int, enabled: bool):
        self.writer: Optional[AtomicJsonlWriter] = None
        self.count = 0
        if enabled:
            name = part_name(shard) + (f"-stage{stage}" if stage else "") + ".jsonl"
            self.writer = AtomicJsonlWriter(os.path.join(out_dir, "rejects", name))

    def write(self, doc: Document, step_index: int, step: str, reason: str, detail: str) -> None:
        if self.writer is not None:
            meta: dict[str, Any] = {**doc.meta, "rejected": {"step_index": step_index, "step": step,
                                                             "reason": reason, "detail": detail}}
            self.writer.write(Document(doc.id, doc.text, meta))
            self.count += 1

    def commit(self) -> None:
        if self.writer is not None and self.count:
            self.writer.commit()

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard()
