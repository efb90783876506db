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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol

import zstandard

from chrono_ci.config.settings import Compression
from chrono_ci.dump.pg_dump import DumpSource
from chrono_ci.errors import DumpFailed, VerificationFailed
from chrono_ci.pipeline.dumprules import DumpReader, Refusal
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


@dataclass(frozen=True)
class ArchiveContents:
    """What a full read of an archive found."""

    stored_bytes: int
    stored_sha256: str
    raw_bytes: int
    trailer_seen: bool
    tables: dict[str, int]
    refusal: Refusal | None = None  # the first thing in it a restore refuses (see chrono_ci.pipeline.dumprules)


def read_archive(
    source: IO[bytes],
    compression: Compression,
    on_raw: Callable[[bytes], None] | None = None,
    *,
    count_rows: bool = True,
    decryptor: Decryptor | None = None,
    profile: str = "postgres",
    max_raw: int | None = None,
) -> ArchiveContents:
    """Read a whole archive: checksum the stored bytes, decompress all of it, watch for the trailer, and (with
    `count_rows`) count the COPY rows and judge the SQL by chrono_ci.pipeline.dumprules.

    Memory stays bounded whatever the compression ratio (a 200 MB value of repeated text compresses to almost
    nothing and must not come back as one 200 MB piece). Raises VerificationFailed when the compressed data is
    damaged (a zstd frame checksum or gzip CRC mismatch) or cut short, or when it holds more than `max_raw`
    bytes of SQL (what its record says it holds): a decompression bomb stops there.
    """
    stored = _HashingReader(source)
    plain: Readable = stored if decryptor is None else _DecryptingReader(stored, decryptor)
    raw = 0
    tail = b""
    reader = DumpReader(profile) if count_rows else None
    for out in decompressed(plain, compression):
        raw += len(out)
        if max_raw is not None and raw > max_raw:
            raise VerificationFailed(
                f"The archive holds more SQL than its record says ({max_raw} bytes): it was replaced or forged.",
                hint="Do not restore it; choose another archive from `chrono-ci recovery list`.",
            )
        if reader is not None:
            reader.feed(out)
        tail = (tail + out[-TRAILER_WINDOW:])[-TRAILER_WINDOW:]
        if on_raw is not None:
            on_raw(out)
    if reader is None:
        return ArchiveContents(stored.count, stored.hash.hexdigest(), raw, TRAILER in tail, {})
    reader.finish()
    return ArchiveContents(
        stored.count, stored.hash.hexdigest(), raw, TRAILER in tail, dict(reader.tables), reader.refusal
    )


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Decryptor(Protocol):
    def update(self, data: bytes) -> bytes: ...

    def finish(self) -> None: ...


class _HashingReader:
    """Counts and hashes the stored bytes as the decompressor pulls them."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(CHUNK_SIZE if size is None or size < 0 else size)
        self.count += len(data)
        self.hash.update(data)
        return data


class _DecryptingReader:
    """The age layer, undone as the decompressor pulls: only authenticated plaintext comes out."""

    def __init__(self, source: Readable, decryptor: Decryptor) -> None:
        self.source = source
        self.decryptor = decryptor
        self.done = False

    def read(self, size: int = -1, /) -> bytes:
        while not self.done:
            chunk = self.source.read(CHUNK_SIZE)
            if not chunk:
                self.decryptor.finish()  # raises on a cut or extended stream
                self.done = True
                return b""
            out = self.decryptor.update(chunk)
            if out:
                return out
        return b""


class _Tap:
    def __init__(self, source: Readable, listener: Callable[[bytes], None]) -> None:
        self.source = source
        self.listener = listener

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        self.listener(data)
        return data


def decompressed(reader: Readable, compression: Compression) -> Iterator[bytes]:
    """The SQL inside, in pieces of at most CHUNK_SIZE."""
    if compression == "none":
        while chunk := reader.read(CHUNK_SIZE):
            yield chunk
    elif compression == "gzip":
        yield from _gunzip(reader)
    else:
        yield from _unzstd(reader)


def _gunzip(reader: Readable) -> Iterator[bytes]:
    inflater = zlib.decompressobj(31)
    try:
        while chunk := reader.read(CHUNK_SIZE):
            if inflater.eof:
                raise VerificationFailed("The archive has data after the end of its gzip stream.")
            # max_length bounds each piece; the rest waits in unconsumed_tail.
            out = inflater.decompress(chunk, CHUNK_SIZE)
            while True:
                if out:
                    yield out
                if not inflater.unconsumed_tail:
                    break
                out = inflater.decompress(inflater.unconsumed_tail, CHUNK_SIZE)
            if inflater.unused_data:
                raise VerificationFailed("The archive has data after the end of its gzip stream.")
    except zlib.error as exc:
        raise VerificationFailed(f"The archive's gzip data is damaged: {exc}.") from exc
    if not inflater.eof:
        raise VerificationFailed("The archive ends in the middle of its gzip stream: it is truncated.")


def _unzstd(source: Readable) -> Iterator[bytes]:
    frame = ZstdFrameWalker()
    reader = _Tap(source, frame.feed)
    try:
        decoder = zstandard.ZstdDecompressor()
        yield from decoder.read_to_iter(reader, read_size=CHUNK_SIZE, write_size=CHUNK_SIZE)  # type: ignore[arg-type]
        while reader.read(CHUNK_SIZE):  # the decoder may stop at the frame's end: anything after it is foreign
            pass
    except zstandard.ZstdError as exc:
        raise VerificationFailed(f"The archive's zstd data is damaged: {exc}.") from exc
    if frame.trailing:
        raise VerificationFailed("The archive has data after the end of its zstd frame.")
    if not frame.complete:
        raise VerificationFailed("The archive ends in the middle of its zstd frame: it is truncated.")


class ZstdFrameWalker:
    """Follows the zstd frame layout (RFC 8878, section 3.1.1) over the compressed bytes.

    The decoder checks every block and the content checksum, but says nothing when the input simply stops; this
    walker knows whether the frame reached its last block and checksum, and whether anything follows it.
    """

    def __init__(self) -> None:
        self._need = 5  # magic number (4) + frame header descriptor (1)
        self._buffer = b""
        self._state = "header"
        self._checksum = False
        self._last = False
        self.complete = False
        self.trailing = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.complete:
                self.trailing = True
                return
            if self._state == "skip":
                step = min(self._need, len(view))
                self._need -= step
                view = view[step:]
                if self._need == 0:
                    self._after_skip()
                continue
            take = min(self._need - len(self._buffer), len(view))
            self._buffer += bytes(view[:take])
            view = view[take:]
            if len(self._buffer) == self._need:
                self._parse(self._buffer)
                self._buffer = b""

    def _parse(self, header: bytes) -> None:
        if self._state == "header":
            if header[:4] != b"\x28\xb5\x2f\xfd":
                raise VerificationFailed("The archive does not start with a zstd frame.")
            descriptor = header[4]
            single_segment = bool(descriptor & 0x20)
            self._checksum = bool(descriptor & 0x04)
            content_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            dictionary = (0, 1, 2, 4)[descriptor & 0x03]
            self._skip((0 if single_segment else 1) + dictionary + content_size, "block")
        elif self._state == "block":
            value = int.from_bytes(header, "little")
            self._last = bool(value & 1)
            kind = (value >> 1) & 3
            size = value >> 3
            if kind == 3:
                raise VerificationFailed("The archive's zstd data is damaged: a reserved block type.")
            self._skip(1 if kind == 1 else size, "block")

    def _skip(self, count: int, then: str) -> None:
        self._then = then
        self._state = "skip"
        self._need = count
        if count == 0:
            self._after_skip()

    def _after_skip(self) -> None:
        if self._then == "block" and not self._last:
            self._state, self._need = "block", 3
        elif self._then == "block" and self._checksum:
            self._then, self._last = "done", False
            self._state, self._need = "skip", 4
        else:
            self._state, self._need = "done", 0
            self.complete = True
