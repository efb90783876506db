"""pg_dump as a child process: a fallible stream source.

Its stdout is the stream (chrono_ci.child_process drains its stderr); its exit status is checked before anything
is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Protocol

from chrono_ci.child_process import ChildProcess
from chrono_ci.errors import DumpFailed
from chrono_ci.source.target import DatabaseTarget
from chrono_ci.source.tools import PgTools


class DumpSource(Protocol):
    """What the pipeline needs from a dump: a stream, an exit status, and an explanation when it failed."""

    target: DatabaseTarget

    @property
    def stdout(self) -> IO[bytes]: ...

    def wait(self) -> int: ...

    def kill(self) -> None:
        """Stop it, and wait until its processes are gone."""

    def stderr_text(self) -> str: ...

    def failure(self, code: int) -> DumpFailed: ...


class DumpProcess(ChildProcess):
    def __init__(self, tools: PgTools, target: DatabaseTarget, extra_args: Sequence[str] = ()) -> None:
        self.tools = tools
        self.target = target
        args = [
            str(tools.tool("pg_dump")),
            "--format=plain",
            "--no-password",  # never wait for a prompt in CI: the password comes from the environment
            *extra_args,
        ]
        super().__init__("pg_dump", args, target.libpq_env())

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
