"""Reading an archive back, in constant memory: the stored bytes counted and hashed, decrypted, decompressed,
the trailer watched for, and (optionally) the SQL judged and its COPY rows counted. Every check of an archive
and every restore reads it through here.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol, runtime_checkable

import zstandard

from chrono_ci.config.options import Compression
from chrono_ci.errors import VerificationFailed
from chrono_ci.pipeline.dumprules import DumpReader, Refusal
from chrono_ci.pipeline.stream import TRAILER, TRAILER_WINDOW
from chrono_ci.storage.base import CHUNK_SIZE


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
    plain = stored if decryptor is None else decryptor.open(stored)
    try:
        return _read_plain(stored, plain, compression, on_raw, count_rows, profile, max_raw)
    finally:
        if isinstance(plain, Closable):
            plain.close()  # an archive given up on part-way: the decrypting thread stops


def _read_plain(
    stored: _HashingReader,
    plain: Readable,
    compression: Compression,
    on_raw: Callable[[bytes], None] | None,
    count_rows: bool,
    profile: str,
    max_raw: int | None,
) -> ArchiveContents:
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


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None: ...


class Decryptor(Protocol):
    """Decrypts one archive as it is read (chrono_ci.crypto.streams.Decryption): only authenticated plaintext
    comes out, and a cut, extended or damaged file raises by the time the reader returns b''."""

    def open(self, source: Readable) -> Readable: ...


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
