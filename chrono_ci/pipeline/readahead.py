"""Reading an archive ahead of its replay: one thread reads, hashes and decompresses the archive and splits the
SQL into pieces while the replay's thread sends the previous pieces to the server.

Hashing, zstd and gzip decompression and libpq's sends release the GIL, so on two cores the reading overlaps the
sending instead of alternating with it. The queue is bounded (QUEUE_BATCHES batches, each from at most
CHUNK_SIZE of SQL), so memory stays flat whatever the archive's size, and the batches come out in the archive's
order. An error while reading (a damaged archive, more SQL than the record says) reaches the replay after the
batches read before it, where the replay would have met it without the thread; the replay stopping (an error of
its own, a signal) stops the reader at its next piece.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

from chrono_ci.pipeline.read import ArchiveContents

QUEUE_BATCHES = 4
_PUT_WAIT = 0.1  # seconds between looks at `stopped` while the queue is full

Batch = TypeVar("Batch")


class _Stopped(Exception):
    """The replay stopped: the reader gives up at its next piece."""


class _End:
    pass


_END = _End()


class ReadAhead(Generic[Batch]):
    """`with ReadAhead(read, split, finish) as batches: for batch in batches: ...`, then `batches.contents`.

    `read(on_raw)` reads the whole archive, calling `on_raw` with each piece of SQL, and returns what it found;
    `split(piece)` turns a piece into a batch, `finish()` gives the last one. Both run in the reading thread,
    and only there until the thread has ended.
    """

    def __init__(
        self,
        read: Callable[[Callable[[bytes], None]], ArchiveContents],
        split: Callable[[bytes], Batch],
        finish: Callable[[], Batch],
    ) -> None:
        self._read = read
        self._split = split
        self._finish = finish
        self._queue: queue.Queue[Batch | _End] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._contents: ArchiveContents | None = None
        self._thread = threading.Thread(target=self._run, name="chrono-ci-read-ahead", daemon=True)

    @property
    def contents(self) -> ArchiveContents:
        """What reading the whole archive found; once every batch has been taken."""
        assert self._contents is not None, "read the batches first"
        return self._contents

    def __enter__(self) -> ReadAhead[Batch]:
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[Batch]:
        while not isinstance(item := self._queue.get(), _End):
            yield item
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()
        while self._thread.is_alive():
            # Empty the queue so that a reader blocked on a full one sees `stopped`.
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_PUT_WAIT)
        self._thread.join()

    def _put(self, item: Batch | _End) -> None:
        while True:
            if self._stopped.is_set():
                raise _Stopped
            try:
                self._queue.put(item, timeout=_PUT_WAIT)
                return
            except queue.Full:
                continue

    def _on_raw(self, piece: bytes) -> None:
        self._put(self._split(piece))

    def _run(self) -> None:
        try:
            self._contents = self._read(self._on_raw)
            self._put(self._finish())
        except _Stopped:
            return
        except BaseException as error:  # handed to the replay's thread, which raises it there
            self._error = error
        with contextlib.suppress(_Stopped):
            self._put(_END)
