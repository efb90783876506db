"""age encryption and decryption as streams, through pyrage: the age project's Rust crate does the format.

pyrage's streaming calls, encrypt_io and decrypt_io, each run a whole file from a reader to a writer. The
pipeline pushes compressed pieces into a stage, and the read path pulls plaintext: so each call runs in a thread,
fed or drained through a bounded channel (a pipe in memory) of 1 MiB, which is what bounds memory whatever the
archive's size.
An error in the thread is raised in the caller's, translated into AgeError (damage, exit 7) or AgeKeyError (a
key that does not fit, exit 2); none carries key material.

Each archive is encrypted with a fresh file key; what is released while decrypting has been authenticated
chunk by chunk (64 KiB) by the age crate, and the end of the stream is authenticated too: a truncated or
extended file fails at its end, never passes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from chrono_ci.crypto.failures import translate
from chrono_ci.errors import AgeError

if TYPE_CHECKING:
    from pyrage import _Identity as Identity
    from pyrage import _Recipient as Recipient

CHANNEL_SIZE = 1 << 20  # what may wait between the two threads, in each direction
READ_SIZE = 1 << 20
HEAD_SIZE = 256  # the first bytes of an archive, kept to tell what kind of file a failure came from


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Channel:
    """Bytes from one thread to another, in order, at most CHANNEL_SIZE waiting: the writer blocks when it is
    full, the reader when it is empty. Like a pipe, without a system call and a GIL hand-over per 8 KiB piece
    (pyrage reads and writes in pieces that small)."""

    def __init__(self, limit: int = CHANNEL_SIZE) -> None:
        self._limit = limit
        self._changed = threading.Condition()
        self._pieces: deque[memoryview] = deque()
        self._size = 0
        self._ended = False  # the writer is done: once empty, read() returns b""
        self._stopped = False  # the reader is gone: write() raises

    # The writer's side.

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = memoryview(bytes(data))
        if not piece:
            return 0  # an empty piece would read as the end
        with self._changed:
            while self._size >= self._limit and not self._stopped:
                self._changed.wait()
            if self._stopped:
                raise BrokenPipeError("the reader stopped")
            self._pieces.append(piece)
            self._size += len(piece)
            self._changed.notify_all()
        return len(piece)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    # The reader's side.

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        wanted = READ_SIZE if size is None or size < 0 else size
        taken: list[memoryview] = []
        with self._changed:
            while not self._pieces and not self._ended and not self._stopped:
                self._changed.wait()
            got = 0
            while self._pieces and got < wanted:
                piece = self._pieces[0]
                if len(piece) <= wanted - got:
                    self._pieces.popleft()
                else:
                    self._pieces[0] = piece[wanted - got :]
                    piece = piece[: wanted - got]
                taken.append(piece)
                got += len(piece)
            self._size -= got
            self._changed.notify_all()
        return b"".join(taken)

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._pieces.clear()
            self._size = 0
            self._changed.notify_all()


class _Collected:
    """Where the encrypting thread writes: taken by the caller at every step, so it never holds more than what
    one channel's worth of input becomes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        with self._lock:
            self._pieces.append(piece)
        return len(piece)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        with self._lock:
            pieces, self._pieces = self._pieces, []
        return b"".join(pieces)


class EncryptingStage:
    """A pipeline stage (compress/flush, like the compressors): what goes in comes out age-encrypted."""

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        import pyrage

        self._pyrage = pyrage
        self._recipients = list(recipients)
        self._input = _Channel()
        self._output = _Collected()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chrono-ci-age-encrypt", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._pyrage.encrypt_io(self._input, self._output, self._recipients)  # type: ignore[arg-type]
        except BaseException as error:  # handed to the caller's thread
            self._error = error
        finally:
            self._input.stop()  # a writer blocked on a full channel wakes up

    def compress(self, data: bytes) -> bytes:
        try:
            self._input.write(data)
        except BrokenPipeError:
            self._thread.join()
            raise self._failure() from None
        return self._output.take()

    def flush(self) -> bytes:
        self._input.end()
        self._thread.join()
        if self._error is not None:
            raise self._failure()
        return self._output.take()

    def close(self) -> None:
        """Stop the thread when the stream is abandoned (a failed dump): what it wrote is thrown away."""
        self._input.end()
        self._thread.join()

    def _failure(self) -> AgeError:
        return AgeError(f"age encryption failed: {self._error}.", hint="Nothing was kept. Please report this.")


class _WatchedSource:
    """The reader handed to the decrypting thread: it keeps the archive's first bytes, and any exception of the
    real source, so that the caller sees that exception rather than the age crate's rewording of it. It never
    returns more than asked for (pyrage copies into a buffer of the size it asked), keeping any excess."""

    def __init__(self, source: Readable) -> None:
        self.source = source
        self.head = b""
        self.count = 0
        self.error: BaseException | None = None
        self._excess = memoryview(b"")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        wanted = READ_SIZE if size is None or size < 0 else size
        if self._excess:
            taken, self._excess = self._excess[:wanted], self._excess[wanted:]
            return bytes(taken)
        else:
            try:
                data = self.source.read(wanted)
            except BaseException as error:
                self.error = error
                raise
            if len(self.head) < HEAD_SIZE:
                self.head += data[: HEAD_SIZE - len(self.head)]
            self.count += len(data)
        if len(data) <= wanted:
            return data
        self._excess = memoryview(data)[wanted:]
        return data[:wanted]


class DecryptingReader:
    """Plaintext pulled from an age archive as it is read: a thread decrypts `source` into a pipe."""

    def __init__(self, source: Readable, identities: Sequence[Identity]) -> None:
        import pyrage

        self._pyrage = pyrage
        self._identities = list(identities)
        self._source = _WatchedSource(source)
        self._plain = _Channel()
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name="chrono-ci-age-decrypt", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._pyrage.decrypt_io(self._source, self._plain, self._identities)  # type: ignore[arg-type]
        except BaseException as error:
            self._error = error
        finally:
            self._plain.end()

    def read(self, size: int = -1, /) -> bytes:
        if self._done:
            return b""
        data = self._plain.read(READ_SIZE if size is None or size < 0 else size)
        if data:
            return data
        self._done = True
        self._thread.join()
        if self._source.error is not None:
            raise self._source.error
        if self._error is not None:
            raise translate(self._error, self._source.head, self._source.count) from None
        return b""

    def close(self) -> None:
        """Stop early (the reader gave up on the archive): the thread ends on its next write."""
        self._plain.stop()
        self._thread.join()


class Decryption:
    """The identities, ready to decrypt any number of archives, one DecryptingReader each."""

    def __init__(self, identities: Sequence[Identity]) -> None:
        self.identities = list(identities)

    def __repr__(self) -> str:
        return f"Decryption({len(self.identities)} identities)"

    def open(self, source: Readable) -> DecryptingReader:
        return DecryptingReader(source, self.identities)
