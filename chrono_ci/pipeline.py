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
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

import zstandard

from chrono_ci.dump import DumpProcess
from chrono_ci.errors import DumpFailed, VerificationFailed
from chrono_ci.settings import Compression
from chrono_ci.storage.base import CHUNK_SIZE

TRAILER = b"-- PostgreSQL database dump complete"
TRAILER_WINDOW = 4096  # the trailer is followed only by a few comment and \unrestrict lines
F_SETPIPE_SZ = 1031  # Linux: a 1 MiB pipe lets pg_dump run ahead while we compress

EXTENSIONS: dict[Compression, str] = {"zstd": ".sql.zst", "gzip": ".sql.gz", "none": ".sql"}


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


def _copy_table_name(line: bytes) -> str | None:
    """'COPY public.users (id, name) FROM stdin;' -> 'public.users' (quotes removed)."""
    if not line.startswith(b"COPY ") or not line.rstrip().endswith(b"FROM stdin;"):
        return None
    text = line[5:].decode("utf-8", errors="replace")
    parts: list[str] = []
    i = 0
    current = ""
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            while True:
                end = text.index('"', end)
                if end + 1 < len(text) and text[end + 1] == '"':
                    end += 2
                    continue
                break
            current += text[i + 1 : end].replace('""', '"')
            i = end + 1
        elif char == ".":
            parts.append(current)
            current = ""
            i += 1
        elif char in " (":
            break
        else:
            current += char
            i += 1
    parts.append(current)
    return ".".join(parts)


class CopyRowCounter:
    """Counts the rows of every COPY block in a plain-format dump, exactly, without holding lines in memory.

    A row inside COPY data never contains a raw newline (pg_dump escapes it as \\n), so rows are newlines, and
    the block ends at a line that is exactly '\\.'.
    """

    def __init__(self) -> None:
        self.tables: dict[str, int] = {}
        self._line = bytearray()  # the current line outside COPY data (DDL), capped
        self._table: str | None = None  # inside a COPY block when set
        self._rows = 0
        self._carry = b""  # undecided bytes at the end of COPY data: the terminator may straddle chunks
        self._carry_at_line_start = True

    def feed(self, data: bytes) -> None:
        pos = 0
        size = len(data)
        while pos < size:
            if self._table is None:
                newline = data.find(b"\n", pos)
                end = size if newline == -1 else newline
                if len(self._line) < 4096:
                    self._line += data[pos : min(end, pos + 4096)]
                if newline == -1:
                    return
                self._start_line(bytes(self._line))
                self._line.clear()
                pos = newline + 1
            else:
                pos = self._feed_copy(data, pos)

    def _start_line(self, line: bytes) -> None:
        table = _copy_table_name(line)
        if table is not None:
            self._table = table
            self._rows = 0
            self._carry = b""
            self._carry_at_line_start = True

    def _feed_copy(self, data: bytes, pos: int) -> int:
        # A virtual newline in front when the undecided bytes begin a line, so that one search finds "\\."
        # whether it opens the block (empty table) or follows a row.
        lead = b"\n" if self._carry_at_line_start else b""
        hay = lead + self._carry + data[pos:]
        index = hay.find(b"\n\\.\n")
        if index != -1:
            self._rows += hay.count(b"\n", len(lead), index + 1)
            assert self._table is not None
            self.tables[self._table] = self.tables.get(self._table, 0) + self._rows
            self._table = None
            consumed = index + 4 - len(lead) - len(self._carry)
            self._carry = b""
            return pos + consumed
        # No terminator yet: the last 3 bytes may be its start, so they stay undecided.
        body = hay[len(lead) :]
        decided = max(0, len(body) - 3)
        if decided:
            self._rows += body.count(b"\n", 0, decided)
            self._carry_at_line_start = body[decided - 1] == 0x0A
        self._carry = body[decided:]
        return len(data)


@dataclass
class StreamStats:
    """What the dump held. The stored bytes' size and sha256 come from the storage backend, which sees them."""

    raw_bytes: int = 0
    raw_sha256: str = ""
    tables: dict[str, int] = field(default_factory=dict)
    trailer_seen: bool = False


class ArchiveStream:
    """A readable stream of the stored archive bytes, fed by pg_dump; `stats` is complete once read returns b''."""

    def __init__(
        self,
        dump: DumpProcess,
        compressor: Compressor,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.dump = dump
        self.source: IO[bytes] = dump.stdout
        self.compressor = compressor
        self.progress = progress
        self.counter = CopyRowCounter()
        self.raw_hash = hashlib.sha256()
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
            self.raw_hash.update(chunk)
            self.counter.feed(chunk)
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
        self.stats.trailer_seen = True
        self.stats.tables = dict(self.counter.tables)
        self.stats.raw_sha256 = self.raw_hash.hexdigest()
        self._finished = True
        return self.compressor.flush()

    def close(self) -> None:
        if not self._finished:
            self.dump.kill()


@dataclass(frozen=True)
class ArchiveContents:
    """What a full read of an archive found."""

    stored_bytes: int
    stored_sha256: str
    raw_bytes: int
    trailer_seen: bool
    tables: dict[str, int]


def read_archive(
    source: IO[bytes], compression: Compression, on_raw: Callable[[bytes], None] | None = None
) -> ArchiveContents:
    """Read a whole archive: checksum the stored bytes, decompress all of it, watch for the trailer.

    Raises VerificationFailed when the compressed data is damaged (a zstd frame checksum or gzip CRC mismatch,
    or a truncated stream).
    """
    stored_hash = hashlib.sha256()
    stored = raw = 0
    tail = b""
    counter = CopyRowCounter()
    decompressor = _Decompressor(compression)
    while chunk := source.read(CHUNK_SIZE):
        stored += len(chunk)
        stored_hash.update(chunk)
        out = decompressor.feed(chunk)
        if out:
            raw += len(out)
            counter.feed(out)
            tail = (tail + out[-TRAILER_WINDOW:])[-TRAILER_WINDOW:]
            if on_raw is not None:
                on_raw(out)
    decompressor.finish()
    return ArchiveContents(stored, stored_hash.hexdigest(), raw, TRAILER in tail, dict(counter.tables))


class _Decompressor:
    def __init__(self, compression: Compression) -> None:
        self.compression = compression
        self._zstd = zstandard.ZstdDecompressor().decompressobj() if compression == "zstd" else None
        self._zlib = zlib.decompressobj(31) if compression == "gzip" else None
        self._done = False

    def feed(self, data: bytes) -> bytes:
        try:
            if self._zstd is not None:
                if self._done:
                    raise VerificationFailed("The archive has data after the end of its zstd frame.")
                out: bytes = self._zstd.decompress(data)
                self._done = bool(self._zstd.eof)
                return out
            if self._zlib is not None:
                if self._zlib.eof:
                    raise VerificationFailed("The archive has data after the end of its gzip stream.")
                return self._zlib.decompress(data)
        except zstandard.ZstdError as exc:
            raise VerificationFailed(f"The archive's zstd data is damaged: {exc}.") from exc
        except zlib.error as exc:
            raise VerificationFailed(f"The archive's gzip data is damaged: {exc}.") from exc
        return data

    def finish(self) -> None:
        if self._zstd is not None and not self._zstd.eof:
            raise VerificationFailed("The archive ends in the middle of its zstd frame: it is truncated.")
        if self._zlib is not None:
            if not self._zlib.eof:
                raise VerificationFailed("The archive ends in the middle of its gzip stream: it is truncated.")
            if self._zlib.unused_data:
                raise VerificationFailed("The archive has data after the end of its gzip stream.")
