"""pg_dump as a child process: a fallible stream source.

Its stdout is the stream; its stderr is drained in a thread (so a chatty pg_dump cannot block on a full pipe);
its exit status is checked before anything is committed.
"""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from typing import IO, Protocol

from chrono_ci.errors import DumpFailed
from chrono_ci.source.target import DatabaseTarget
from chrono_ci.source.tools import PgTools

STDERR_KEEP = 64 * 1024


class DumpSource(Protocol):
    """What the pipeline needs from a dump: a stream, an exit status, and an explanation when it failed."""

    target: DatabaseTarget

    @property
    def stdout(self) -> IO[bytes]: ...

    def wait(self) -> int: ...

    def kill(self) -> None: ...

    def stderr_text(self) -> str: ...

    def failure(self, code: int) -> DumpFailed: ...


class DumpProcess:
    def __init__(self, tools: PgTools, target: DatabaseTarget, extra_args: Sequence[str] = ()) -> None:
        self.tools = tools
        self.target = target
        self.args = [
            str(tools.tool("pg_dump")),
            "--format=plain",
            "--no-password",  # never wait for a prompt in CI: the password comes from the environment
            *extra_args,
        ]
        self._stderr_tail: deque[bytes] = deque()
        self._stderr_size = 0
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=target.libpq_env(),
            bufsize=0,
        )
        self._drain = threading.Thread(target=self._read_stderr, name="pg_dump-stderr", daemon=True)
        self._drain.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr_tail.append(line)
            self._stderr_size += len(line)
            while self._stderr_size > STDERR_KEEP and len(self._stderr_tail) > 1:
                self._stderr_size -= len(self._stderr_tail.popleft())

    def wait(self) -> int:
        code = self.proc.wait()
        self._drain.join(timeout=10)
        return code

    def stderr_text(self) -> str:
        return b"".join(self._stderr_tail).decode("utf-8", errors="replace").strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def failure(self, code: int) -> DumpFailed:
        text = self.stderr_text()
        lines = [line for line in text.splitlines() if line.strip()]
        detail = "\n".join(lines[-6:]) if lines else "(no message)"
        hint = "Nothing was kept: no archive was written and no older backup was removed. Fix the cause and run again."
        if "server version mismatch" in text:
            hint = "pg_dump is older than the server; set PG_BIN_DIR to a newer pg_dump. " + hint
        elif "row-level security" in text:
            hint = "The role lacks BYPASSRLS; grant it (ALTER ROLE ... BYPASSRLS) or use a role that has it. " + hint
        elif "permission denied" in text:
            hint = "The role may not read every table; grant pg_read_all_data or use the owner. " + hint
        return DumpFailed(f"pg_dump failed with exit code {code} on {self.target.display()}:\n{detail}", hint=hint)
