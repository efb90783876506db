"""The streaming stages between pg_dump's stdout and storage, in constant memory.

raw bytes -> (byte count, sha256, per-table row counts from COPY blocks, trailer watch) -> compressor ->
(stored byte count, sha256) -> the storage backend's put(), which reads this as a stream.

At the end of the stream, before the compressor's last bytes are handed over, the dump is judged: pg_dump must
have exited 0, the plain-format trailer must have been seen and the stream must not be empty. If not, read()
raises DumpFailed, and the backend discards everything it wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

import zstandard

from chrono_ci.config.options import Compression
from chrono_ci.dump.pg_dump import DumpSource
from chrono_ci.errors import DumpFailed
from chrono_ci.pipeline.dumprules import DumpReader
from chrono_ci.storage.base import CHUNK_SIZE

TRAILER = b"-- PostgreSQL database dump complete"
TRAILER_WINDOW = 4096  # the trailer is followed only by a few comment and \unrestrict lines
F_SETPIPE_SZ = 1031  # Linux: a 1 MiB pipe lets pg_dump run ahead while we compress

EXTENSIONS: dict[Compression, str] = {"zstd": ".sql.zst", "gzip": ".sql.gz", "none": ".sql"}
ENCRYPTED_SUFFIX = ".age"


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Chain:
    """Two stages as one: the compressor's output goes through the encryptor."""

    def __init__(self, first: Compressor, second: Compressor) -> None:
        self.first = first
        self.second = second

    def compress(self, data: bytes) -> bytes:
        return self.second.compress(self.first.compress(data))

    def flush(self) -> bytes:
        return self.second.compress(self.first.flush()) + self.second.flush()

    def close(self) -> None:
        close = getattr(self.second, "close", None)
        if close is not None:
            close()


def make_stages(compression: Compression, level: int, encryptor: Compressor | None = None) -> Compressor:
    """The stored form: compressed, then (optionally) encrypted with age before it touches disk or network."""
    compressor = make_compressor(compression, level)
    return compressor if encryptor is None else _Chain(compressor, encryptor)


def make_compressor(compression: Compression, level: int) -> Compressor:
    if compression == "zstd":
        # The frame's content checksum lets every later decompression prove the bytes are intact.
        cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        return cctx.compressobj()
    if compression == "gzip":
        return zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container, readable by gunzip
    return _Identity()


@dataclass
class StreamStats:
    """What the dump held. The stored bytes' size and sha256 come from the storage backend, which sees them."""

    raw_bytes: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    trailer_seen: bool = False


class ArchiveStream:
    """A readable stream of the stored archive bytes, fed by pg_dump; `stats` is complete once read returns b''."""

    def __init__(
        self,
        dump: DumpSource,
        compressor: Compressor,
        progress: Callable[[int], None] | None = None,
        profile: str = "postgres",
    ) -> None:
        self.dump = dump
        self.source: IO[bytes] = dump.stdout
        self.compressor = compressor
        self.progress = progress
        self.reader = DumpReader(profile)
        self.stats = StreamStats()
        self._tail = b""
        self._finished = False
        with contextlib.suppress(OSError):  # a smaller pipe only costs a little speed
            fcntl.fcntl(self.source.fileno(), F_SETPIPE_SZ, CHUNK_SIZE)

    def read(self, size: int = -1) -> bytes:
        if self._finished:
            return b""
        while True:
            chunk = self.source.read(CHUNK_SIZE)
            if not chunk:
                return self._finish()
            self.stats.raw_bytes += len(chunk)
            self.reader.feed(chunk)
            self._tail = (self._tail + chunk[-TRAILER_WINDOW:])[-TRAILER_WINDOW:]
            if self.progress is not None:
                self.progress(self.stats.raw_bytes)
            out = self.compressor.compress(chunk)
            if out:
                return out

    def _finish(self) -> bytes:
        code = self.dump.wait()
        if code != 0:
            raise self.dump.failure(code)
        if self.stats.raw_bytes == 0:
            raise DumpFailed(
                f"pg_dump exited 0 but wrote nothing for {self.dump.target.display()}.",
                hint="Nothing was kept. Check that the pg_dump in use is a real PostgreSQL pg_dump.",
            )
        if TRAILER not in self._tail:
            raise DumpFailed(
                f"The dump of {self.dump.target.display()} ended without the line "
                f"'{TRAILER.decode()}': it is incomplete.",
                hint="Nothing was kept. The connection or pg_dump was probably cut off; run again.",
            )
        self.reader.finish()
        if self.reader.refusal is not None:
            raise DumpFailed(
                f"The dump of {self.dump.target.display()} holds what a restore refuses: "
                f"{self.reader.refusal.message()}.",
                hint="Nothing was kept: chrono-ci keeps only backups it can restore. Please report this with the "
                "line's statement (see SECURITY.md for what a restore refuses and why).",
            )
        self.stats.trailer_seen = True
        self.stats.tables = dict(self.reader.tables)
        self._finished = True
        return self.compressor.flush()

    def close(self) -> None:
        if not self._finished:
            self.dump.kill()
        close = getattr(self.compressor, "close", None)
        if close is not None:
            close()  # the encryption thread, if any, stops
