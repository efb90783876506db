"""A tool run as a child process whose stdout the caller streams: the one place chrono-ci starts pg_dump and
pg_dumpall.

Its stderr is drained in a thread, so that a chatty tool cannot block on a full pipe while the caller reads
stdout, and the last STDERR_KEEP bytes are kept to explain a failure.
"""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import IO

STDERR_KEEP = 64 * 1024


class ChildProcess:
    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.args = list(args)
        self._tail: deque[bytes] = deque()
        self._size = 0
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            bufsize=0,
        )
        self._drain = threading.Thread(target=self._read_stderr, name=f"{name}-stderr", daemon=True)
        self._drain.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def read(self, size: int) -> bytes:
        return self.stdout.read(size)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._tail.append(line)
            self._size += len(line)
            while self._size > STDERR_KEEP and len(self._tail) > 1:
                self._size -= len(self._tail.popleft())

    def wait(self) -> int:
        code = self.proc.wait()
        self._drain.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def stderr_text(self) -> str:
        return b"".join(self._tail).decode("utf-8", errors="replace").strip()
