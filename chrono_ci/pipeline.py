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

from chrono_ci.dump import DumpSource
from chrono_ci.errors import DumpFailed, VerificationFailed
from chrono_ci.settings import Compression
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
        self._tail = b"\n"  # the last bytes of the block seen so far: the terminator may straddle chunks

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
            # A virtual newline: the block may end at once ("\\." right after the COPY line, an empty table).
            self._tail = b"\n"

    def _feed_copy(self, data: bytes, pos: int) -> int:
        """Count rows up to the block's end; `_rows` counts the newlines seen so far inside the block.

        No copies of the chunk: one search and one count over it, plus a look at the few bytes around the
        boundary with the previous chunk, where the terminator may straddle.
        """
        joint = self._tail + data[pos : pos + 3]
        at = joint.find(b"\n\\.\n")
        if at != -1 and at < len(self._tail):
            return self._end_block(pos + at + 4 - len(self._tail))
        found = data.find(b"\n\\.\n", pos)
        if found != -1:
            self._rows += data.count(b"\n", pos, found + 1)
            return self._end_block(found + 4)
        self._rows += data.count(b"\n", pos)
        self._tail = (self._tail + data[max(pos, len(data) - 3) :])[-3:]
        return len(data)

    def _end_block(self, end: int) -> int:
        assert self._table is not None
        self.tables[self._table] = self.tables.get(self._table, 0) + self._rows
        self._table = None
        return end


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
    ) -> None:
        self.dump = dump
        self.source: IO[bytes] = dump.stdout
        self.compressor = compressor
        self.progress = progress
        self.counter = CopyRowCounter()
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
    source: IO[bytes],
    compression: Compression,
    on_raw: Callable[[bytes], None] | None = None,
    *,
    count_rows: bool = True,
    decryptor: Decryptor | None = None,
) -> ArchiveContents:
    """Read a whole archive: checksum the stored bytes, decompress all of it, watch for the trailer.

    Memory stays bounded whatever the compression ratio (a 200 MB value of repeated text compresses to almost
    nothing and must not come back as one 200 MB piece). Raises VerificationFailed when the compressed data is
    damaged (a zstd frame checksum or gzip CRC mismatch) or cut short.
    """
    stored = _HashingReader(source)
    plain: Readable = stored if decryptor is None else _DecryptingReader(stored, decryptor)
    raw = 0
    tail = b""
    counter = CopyRowCounter()
    for out in decompressed(plain, compression):
        raw += len(out)
        if count_rows:
            counter.feed(out)
        tail = (tail + out[-TRAILER_WINDOW:])[-TRAILER_WINDOW:]
        if on_raw is not None:
            on_raw(out)
    return ArchiveContents(stored.count, stored.hash.hexdigest(), raw, TRAILER in tail, dict(counter.tables))


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
