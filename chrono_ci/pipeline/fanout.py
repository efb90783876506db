"""Where a backup goes besides (or instead of) the local folder: S3 and GitHub artifacts, fed from the same
stream as it is dumped.

One stream, several stores: the first store reads the archive stream itself; every other store reads a copy
of each chunk from a small bounded queue in its own thread (so memory stays constant, and the slowest store sets
the pace instead of a temp file). If the dump fails, every store receives the failure and discards what it had.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from chrono_ci.errors import ChronoError, StorageError
from chrono_ci.storage.base import ObjectInfo, Seal, Storage

QUEUE_CHUNKS = 8  # at most this many 1 MiB chunks wait for a slow store


@dataclass
class Destination:
    target: str  # "local" | "s3" | "artifact"
    storage: Storage
    outcome: dict[str, Any] = field(default_factory=dict)
    info: ObjectInfo | None = None
    error: ChronoError | None = None


class UpstreamFailed(Exception):
    """What a secondary store sees when the primary stream failed: it must discard its upload."""


class _Branch:
    """The readable side of one secondary store: chunks arrive through a bounded queue."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | BaseException] = queue.Queue(QUEUE_CHUNKS)
        self.finished = threading.Event()  # the consumer stopped (done or failed): stop feeding it

    def read(self, size: int = -1) -> bytes:
        item = self.chunks.get()
        if isinstance(item, BaseException):
            raise UpstreamFailed(str(item)) from item
        return item

    def offer(self, item: bytes | BaseException) -> None:
        while not self.finished.is_set():
            with contextlib.suppress(queue.Full):
                self.chunks.put(item, timeout=0.2)
                return


class _Tee:
    """Wraps the archive stream: every chunk the primary store reads is also offered to every branch."""

    def __init__(self, source: BinaryIO, branches: list[_Branch]) -> None:
        self.source = source
        self.branches = branches

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.source.read(size)
        except BaseException as exc:
            for branch in self.branches:
                branch.offer(exc)
            raise
        for branch in self.branches:
            branch.offer(data)
        return data


def put_everywhere(
    destinations: list[Destination],
    key: str,
    stream: BinaryIO,
    metadata: Mapping[str, str],
    seal: Seal | None = None,
) -> None:
    """Store `stream` under `key` in every destination; each records its info or its error.

    The first destination is primary: if it fails, the exception propagates (after the others are told).
    A secondary failing is recorded in its Destination and does not stop the others.
    """
    primary, secondaries = destinations[0], destinations[1:]
    branches = [_Branch() for _ in secondaries]
    threads = []
    for destination, branch in zip(secondaries, branches, strict=True):
        thread = threading.Thread(
            target=_consume, args=(destination, branch, key, metadata, seal), name=f"upload-{destination.target}"
        )
        thread.start()
        threads.append(thread)
    try:
        primary.info = primary.storage.put(key, _Tee(stream, branches), metadata, seal)  # type: ignore[arg-type]
    except BaseException as exc:
        for branch in branches:
            branch.offer(exc)
        raise
    finally:
        for thread in threads:
            thread.join()


def _consume(
    destination: Destination, branch: _Branch, key: str, metadata: Mapping[str, str], seal: Seal | None
) -> None:
    try:
        destination.info = destination.storage.put(key, branch, metadata, seal)  # type: ignore[arg-type]
    except UpstreamFailed:
        pass  # the primary's error is the one reported
    except ChronoError as error:
        destination.error = error
    except Exception as exc:  # a backend bug must not take the other stores down with it
        destination.error = StorageError(f"{destination.target} upload failed: {type(exc).__name__}: {exc}")
    finally:
        branch.finished.set()
        # Unblock the feeder if it is waiting on a full queue.
        with contextlib.suppress(queue.Empty):
            while True:
                branch.chunks.get_nowait()
