"""Open a file as a stream of bytes, decompressing ``.gz``, ``.bz2`` and ``.zst`` on the fly.

Readers stream line by line (or record by record) so a corpus larger than memory can be
read. A damaged compressed file must not take the documents before the damage with it, so
codec failures surface as one ``CorruptStream`` error, raised only when the reader reaches
the damage; the reader then reports a single ``truncated_<codec>`` or ``bad_<codec>`` skip
and keeps everything it already yielded.

The stdlib ``gzip`` and ``bz2`` modules raise ``EOFError`` on a truncated stream.
``zstandard``'s stream reader instead ends quietly at the cut, so ``.zst`` goes through
our own small reader that checks the frame really finished.
"""

from __future__ import annotations

import bz2
import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from lmforge.data.readers.base import one_line
from lmforge.errors import DataError

# Codec name (used in skip reasons: truncated_gzip, bad_zst, ...) by file-name suffix.
_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zst"}
_CHUNK_BYTES = 1 << 16


class CorruptStream(Exception):
    """The compressed stream of a file ends early (``truncated``) or is not valid (``bad``).

    Deliberately not an ``OSError``: readers treat ``OSError`` as "cannot read the file".
    """

    def __init__(self, problem: str, codec: str, detail: str = "") -> None:
        super().__init__(f"{problem} {codec} stream {detail}".strip())
        self.problem = problem
        self.codec = codec
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.problem}_{self.codec}"

    def describe(self, path: str, position: str) -> str:
        """One sentence naming the file and how far it was read, e.g. ``position='line 12'``."""
        if self.problem == "truncated":
            return f"{path} is a truncated {self.codec} file (it ends after {position}): re-create or re-download it"
        return f"{path} is not a valid {self.codec} file after {position} ({self.detail}): re-create it"


def codec_of(path: str) -> str | None:
    """The compression codec a file name announces, or None for a plain file."""
    for suffix, codec in _CODECS.items():
        if path.endswith(suffix):
            return codec
    return None


@contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
    """A buffered binary stream of ``path``'s content, decompressed according to its suffix.

    ``OSError`` means the file itself cannot be opened or read; a damaged compressed stream
    raises ``CorruptStream`` at the point of damage.
    """
    codec = codec_of(path)
    with open(path, "rb") as raw:
        if codec is None:
            yield raw
            return
        with io.BufferedReader(_CheckedStream(_decoder(codec, raw), codec), _CHUNK_BYTES) as stream:
            yield stream


def _decoder(codec: str, raw: BinaryIO) -> BinaryIO:
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bz2":
        return bz2.BZ2File(raw, mode="rb")
    return _ZstdStream(raw)


class _CheckedStream(io.RawIOBase):
    """Turns the gzip and bz2 modules' ways of failing into ``CorruptStream`` (zstd raises it itself)."""

    def __init__(self, inner: BinaryIO, codec: str) -> None:
        self._inner = inner
        self._codec = codec

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            # read1, not read: read(n) insists on n bytes and would lose the data before a cut.
            data = self._inner.read1(len(buffer))
        except EOFError:
            raise CorruptStream("truncated", self._codec) from None
        except (zlib.error, gzip.BadGzipFile) as err:
            raise CorruptStream("bad", self._codec, one_line(err)) from None
        except OSError as err:
            if err.errno is not None:  # a real I/O error of the file, not bad data
                raise
            raise CorruptStream("bad", self._codec, one_line(err)) from None  # bz2: "Invalid data stream"
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class _ZstdStream:
    """Decompress a (multi-frame) zstd file chunk by chunk, raising ``CorruptStream`` if it is cut or invalid."""

    def __init__(self, raw: BinaryIO) -> None:
        try:
            import zstandard
        except ImportError:
            raise DataError("reading .zst files needs zstandard: pip install lmforge[data]") from None
        self._zstd = zstandard
        self._raw = raw
        self._decoder = zstandard.ZstdDecompressor().decompressobj()
        self._frame_started = False
        # Decoded bytes not yet handed out: a small compressed chunk can expand to many MB,
        # so hand it out by offset instead of re-slicing the remainder on every read.
        self._pending = b""
        self._offset = 0

    def read(self, size: int) -> bytes:
        while self._offset >= len(self._pending):
            chunk = self._raw.read(_CHUNK_BYTES)
            if not chunk:
                if self._frame_started and not self._decoder.eof:
                    raise CorruptStream("truncated", "zst")
                return b""
            self._pending, self._offset = self._decode(chunk), 0
        data = self._pending[self._offset: self._offset + size]
        self._offset += len(data)
        if self._offset >= len(self._pending):
            self._pending, self._offset = b"", 0  # free a large decoded chunk as soon as it is handed out
        return data

    read1 = read

    def _decode(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            self._frame_started = True
            try:
                out.append(self._decoder.decompress(chunk))
            except self._zstd.ZstdError as err:
                raise CorruptStream("bad", "zst", one_line(err)) from None
            if not self._decoder.eof:
                break
            # A frame finished: whatever follows is the next frame (zstd files may hold several).
            chunk = self._decoder.unused_data
            self._decoder = self._zstd.ZstdDecompressor().decompressobj()
            self._frame_started = False
        return b"".join(out)

    def close(self) -> None:
        pass
