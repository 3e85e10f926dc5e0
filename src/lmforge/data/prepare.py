"""`lmforge prepare`: read a source once and split its documents into train/val JSON lines.

The split is decided per document by hashing ``(split_seed, document text)`` to a number in
[0, 1): below ``val_fraction`` goes to val. For one-file-one-document sources (stdlib, text)
a document is a file, so the split is by file; for JSONL/Parquet it is by record. Hashing the
content rather than drawing at random keeps each document's side fixed when others are added
or removed, independent of read order and of where the corpus lies on disk (the same corpus
copied to another directory splits the same way), and it puts identical documents on the
same side, so an exact duplicate can never leak from train into val.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from lmforge.config import PrepareConfig
from lmforge.data.docfile import AtomicJsonlWriter, write_json
from lmforge.data.document import Document, ReadStats
from lmforge.data.sources import read_documents
from lmforge.errors import ConfigError, DataError

SPLITS = ("train", "val")


def split_fraction(split_seed: int, key: str) -> float:
    """A uniform number in [0, 1) fixed by ``(split_seed, key)``: 64 bits of BLAKE2b."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8,
                             key=str(split_seed).encode()).digest()
    return int.from_bytes(digest, "little") / 2.0**64


class _SplitWriter(AtomicJsonlWriter):
    """Writes one split's temporary JSONL, counting documents and UTF-8 bytes.

    It remembers the document nearest the val threshold (lowest fraction in train, highest
    in val) so that, if the other split ends up empty, that document can be moved over.
    """

    def __init__(self, name: str, path: str):
        super().__init__(path)
        self.name = name
        self.num_docs = 0
        self.num_bytes = 0
        self.edge: tuple[float, int, Document] | None = None  # (fraction, line index, doc)

    def add(self, doc: Document, fraction: float) -> None:
        nearer = self.edge is None or (fraction < self.edge[0] if self.name == "train" else fraction > self.edge[0])
        if nearer:
            self.edge = (fraction, self.num_docs, doc)
        self.write(doc)
        self.num_docs += 1
        self.num_bytes += len(doc.text.encode("utf-8"))

    def give_edge_to(self, other: "_SplitWriter") -> None:
        """Move the remembered document into ``other`` (rewrites this split's file without it)."""
        assert self.edge is not None
        _, skip_line, doc = self.edge
        self.file.close()
        rewritten = self.tmp + ".rewrite"
        with open(self.tmp, encoding="utf-8") as src, open(rewritten, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i != skip_line:
                    dst.write(line)
        os.replace(rewritten, self.tmp)
        self.num_docs -= 1
        self.num_bytes -= len(doc.text.encode("utf-8"))
        other.add(doc, self.edge[0])
        self.edge = None

    def counts(self) -> dict[str, int]:
        return {"num_docs": self.num_docs, "num_bytes": self.num_bytes}


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Read ``cfg.source`` and write ``out_dir/{train,val}.jsonl`` and ``stats.json``.

    Both splits are non-empty whenever at least two documents are kept. Returns the stats
    (also written to ``stats.json``): ``read == kept + sum(skipped.values())``. Raises
    ``DataError`` when no document is kept.
    """
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"config key 'val_fraction': expected a number in [0, 1), got {cfg.val_fraction}")
    os.makedirs(cfg.out_dir, exist_ok=True)
    stats = ReadStats()
    writers = {s: _SplitWriter(s, os.path.join(cfg.out_dir, f"{s}.jsonl")) for s in SPLITS}
    try:
        for doc in read_documents(cfg.source, stats):
            fraction = split_fraction(cfg.split_seed, doc.text)
            writers["val" if fraction < cfg.val_fraction else "train"].add(doc, fraction)
        if stats.kept == 0:
            raise DataError(_empty_corpus_message(cfg, stats))
        train, val = writers["train"], writers["val"]
        if val.num_docs == 0 and train.num_docs >= 2:
            train.give_edge_to(val)
        elif train.num_docs == 0 and val.num_docs >= 2:
            val.give_edge_to(train)
        for writer in writers.values():
            writer.commit()
    finally:
        for writer in writers.values():
            writer.discard()
    result = {
        "source": {"kind": cfg.source.kind, "paths": list(cfg.source.paths)},
        **stats.to_dict(),
        "val_fraction": cfg.val_fraction,
        "split_seed": cfg.split_seed,
        "splits": {s: writers[s].counts() for s in SPLITS},
    }
    write_json(os.path.join(cfg.out_dir, "stats.json"), result)
    return result


def _empty_corpus_message(cfg: PrepareConfig, stats: ReadStats) -> str:
    if stats.read == 0:
        what = "the source yielded no documents"
    else:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.skipped.items()))
        what = f"read {stats.read} documents and skipped all of them ({reasons})"
    return f"corpus is empty: {what}; check --source.kind and --source.paths"
