"""The compressed stream decompressed again as it is written: proof that the archive holds the dump, without a
second pass over the archive once it is stored.

The compressor's output is handed to a thread that decompresses it (zstd and zlib release the GIL while they
work, so on a machine with a spare core this costs almost no wall time) and counts what comes out. At the end
the decompressor must have reached the end of the stream, with the zstd frame's content checksum (xxh64 of the
SQL, computed by the compressor from its input) or the gzip CRC-32 verified, and it must have produced exactly
as many bytes as pg_dump wrote. That is what the full re-read of a new archive proved; the bytes on disk are then
proven against the sha256 computed in the stream (chrono_ci/verify/integrity.py, check_written).
"""

from __future__ import annotations

import queue
import threading
import zlib
from dataclasses import dataclass
from typing import Protocol

import zstandard

from chrono_ci.config.options import Compression
from chrono_ci.storage.base import CHUNK_SIZE

# Compressed pieces waiting for the decompressing thread: enough to ride out a slow moment, a few MiB at most.
QUEUE_PIECES = 16


@dataclass(frozen=True)
class RoundTripResult:
    ok: bool
    raw_bytes: int  # what came out of the decompressor
    detail: str


class _Inflater(Protocol):
    def feed(self, data: bytes) -> int: ...

    def finish(self) -> str | None: ...


class _Zstd:
    def __init__(self) -> None:
        self.decoder = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> int:
        if self.decoder.eof:
            raise ValueError("data after the end of the zstd frame")
        produced = len(self.decoder.decompress(data))
        if self.decoder.unused_data:
            raise ValueError("data after the end of the zstd frame")
        return produced

    def finish(self) -> str | None:
        return None if self.decoder.eof else "the zstd frame does not end"


class _Gzip:
    def __init__(self) -> None:
        self.inflater = zlib.decompressobj(31)

    def feed(self, data: bytes) -> int:
        if self.inflater.eof:
            raise ValueError("data after the end of the gzip stream")
        produced = len(self.inflater.decompress(data, CHUNK_SIZE))
        while self.inflater.unconsumed_tail:
            produced += len(self.inflater.decompress(self.inflater.unconsumed_tail, CHUNK_SIZE))
        if self.inflater.unused_data:
            raise ValueError("data after the end of the gzip stream")
        return produced

    def finish(self) -> str | None:
        return None if self.inflater.eof else "the gzip stream does not end"


class _Nothing:
    def feed(self, data: bytes) -> int:
        return len(data)

    def finish(self) -> str | None:
        return None


def _inflater_for(compression: Compression) -> _Inflater:
    if compression == "zstd":
        return _Zstd()
    if compression == "gzip":
        return _Gzip()
    return _Nothing()


_END = b""  # feed() never queues an empty piece: this one means the stream ended


class RoundTrip:
    """Decompresses, on its own thread, every piece `feed` is given; `finish` waits and gives the verdict.

    Memory: at most QUEUE_PIECES compressed pieces wait, and one decompressed piece exists at a time.
    """

    def __init__(self, compression: Compression) -> None:
        self.compression = compression
        self._inflater = _inflater_for(compression)
        self._pieces: queue.Queue[bytes] = queue.Queue(QUEUE_PIECES)
        self._raw = 0
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="chrono-roundtrip", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        if data and self._failure is None:
            self._pieces.put(data)

    def finish(self, expected_raw: int) -> RoundTripResult:
        self._pieces.put(_END)
        self._thread.join()
        name = self.compression
        if self._failure is not None:
            return RoundTripResult(False, self._raw, f"{name}: decompressing what was written failed: {self._failure}")
        if self._raw != expected_raw:
            return RoundTripResult(
                False, self._raw, f"{name}: {self._raw} bytes came back out, pg_dump wrote {expected_raw}"
            )
        if name == "none":
            return RoundTripResult(True, self._raw, f"none: {self._raw} bytes of SQL, stored as is")
        how = "frame checksum verified" if name == "zstd" else "CRC-32 verified"
        return RoundTripResult(True, self._raw, f"{name}: {self._raw} bytes of SQL, decompressed as written ({how})")

    def abandon(self) -> None:
        """The stream failed: stop the thread without a verdict. Once a failure is set the thread only drains
        the queue, so the end marker always gets in."""
        self._failure = self._failure or "abandoned"
        self._pieces.put(_END)
        self._thread.join()

    def _run(self) -> None:
        while piece := self._pieces.get():
            if self._failure is not None:
                continue  # drain: the feeder never blocks on a failed check
            try:
                self._raw += self._inflater.feed(piece)
            except (ValueError, zstandard.ZstdError, zlib.error) as exc:
                self._failure = str(exc)
            except Exception as exc:  # anything else (out of memory): a failed check, and the thread goes on draining
                self._failure = f"{type(exc).__name__}: {exc}"
        if self._failure is None:
            self._failure = self._inflater.finish()
