"""Parquet files: one document per row of the ``source.text_field`` string column.

Rows are read in batches of ``_BATCH_ROWS`` so memory stays bounded whatever the file size.
"""

from __future__ import annotations

from collections.abc import Iterator

from lmforge.config import SourceConfig
from lmforge.data.document import BadDocument, Document
from lmforge.data.readers.base import Item, one_line, require, unreadable

SUFFIXES = (".parquet",)
DEPENDENCY = ("pyarrow.parquet", "reading Parquet", "parquet")  # checked before any file is read
_BATCH_ROWS = 1024


def read_file(path: str, cfg: SourceConfig) -> Iterator[Item]:
    pq = require("pyarrow.parquet", "reading Parquet", extra="parquet")
    import pyarrow as pa

    text_field = cfg.text_field
    row = 0
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        column = parquet.schema_arrow.field(text_field) if text_field in names else None
        if column is None or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            yield BadDocument(path, "missing_field", f"{path} has no string column '{text_field}' "
                                                     f"(found: {', '.join(names)})", fix="text_field")
            return
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=[text_field]):
            for text in batch.column(0).to_pylist():
                where = f"{path}:{row}"
                if text is None:
                    yield BadDocument(where, "missing_field",
                                      f"{where} has a null '{text_field}': fill or drop the row")
                else:
                    yield Document(where, text, {"source": path, "row": row})
                row += 1
    except OSError as err:
        if err.errno is not None:  # the OS refused the file; Arrow's own I/O errors carry no errno
            yield unreadable(f"{path}:{row}", path, err)
        else:
            yield _bad_parquet(path, row, err)
    except pa.ArrowException as err:
        yield _bad_parquet(path, row, err)


def _bad_parquet(path: str, row: int, err: Exception) -> BadDocument:
    return BadDocument(f"{path}:{row}", "bad_parquet",
                       f"{path} is not a readable Parquet file (at row {row}: {one_line(err)}): re-create it")
