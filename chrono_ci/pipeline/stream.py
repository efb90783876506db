"""The streaming stages between pg_dump's stdout and storage, in constant memory.

raw bytes -> (byte count, per-table row counts from COPY blocks, dump rules, trailer watch) -> compressor ->
(decompressed again on a thread, chrono_ci/pipeline/roundtrip.py) -> encryptor, if any -> the storage backend's
put(), which reads this as a stream and computes the stored bytes' size and sha256.

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
from chrono_ci.pipeline.roundtrip import RoundTrip, RoundTripResult
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
        *,
        encryptor: Compressor | None = None,
        roundtrip: RoundTrip | None = None,
    ) -> None:
        self.dump = dump
        self.source: IO[bytes] = dump.stdout
        self.compressor = compressor
        self.encryptor = encryptor
        self.roundtrip = roundtrip
        self.proof: RoundTripResult | None = None  # the round trip's verdict, once the stream ended
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
            out = self._stored(self.compressor.compress(chunk))
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
        last = self._stored(self.compressor.flush())
        if self.encryptor is not None:
            last += self.encryptor.flush()
        if self.roundtrip is not None:
            self.proof = self.roundtrip.finish(self.stats.raw_bytes)
            self.roundtrip = None
        self._finished = True
        return last

    def _stored(self, compressed: bytes) -> bytes:
        if self.roundtrip is not None:
            self.roundtrip.feed(compressed)
        return compressed if self.encryptor is None else self.encryptor.compress(compressed)

    def close(self) -> None:
        if not self._finished:
            self.dump.kill()
        if self.roundtrip is not None:
            self.roundtrip.abandon()
            self.roundtrip = None
        close = getattr(self.encryptor, "close", None)
        if close is not None:
            close()  # the encryption thread, if any, stops
