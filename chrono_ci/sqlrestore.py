"""Feed a plain-format archive to psql in one transaction: all of it, or nothing.

psql runs with ON_ERROR_STOP, reading the decompressed SQL from a pipe inside one explicit transaction: we send
BEGIN, a preamble (for a restore: drop what the backup does not have), the archive, and COMMIT only once the
whole archive has been read and its integrity proven. If chrono-ci dies half-way (SIGKILL, a cancelled job),
psql reaches the end of its input inside an open transaction and exits, and the server rolls everything back;
`psql --single-transaction` would instead COMMIT at the end of its input, whatever came before it. Lines that a target
cannot take are neutralised on the way: `SET transaction_timeout` (pg_dump >= 17) on servers older than 17, and
`\\restrict` / `\\unrestrict` for a psql that predates them.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chrono_ci.errors import RestoreFailed
from chrono_ci.pipeline import Decryptor, read_archive
from chrono_ci.postgres import DatabaseTarget, PgTools
from chrono_ci.settings import Compression

# The first psql of each branch that knows \restrict (CVE-2025-8714).
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
HEADER_BYTES = 64 * 1024  # pg_dump writes its SET lines before anything else
_META = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+$")
_MISSING_EXTENSION = re.compile(
    r'extension "([^"]+)" is not available|could not open extension control file "[^"]*/([^/"]+)\.control"'
)


def psql_knows_restrict(version: str) -> bool:
    major, _, minor = version.partition(".")
    number = int(major)
    if number >= 18:
        return True
    since = RESTRICT_SINCE.get(number)
    return since is not None and int(minor or 0) >= since


class SqlFilter:
    """Rewrites the few lines a target cannot take; everything else passes through untouched."""

    def __init__(self, server_major: int, psql_version: str) -> None:
        self.drop_transaction_timeout = server_major < 17
        self.drop_restrict = not psql_knows_restrict(psql_version)
        self._seen = 0
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        if not (self.drop_transaction_timeout or self.drop_restrict):
            return data
        data = self._carry + data
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        return self._rewrite(data[:cut])

    def finish(self) -> bytes:
        rest, self._carry = self._carry, b""
        return self._rewrite(rest)

    def _rewrite(self, block: bytes) -> bytes:
        in_header = self._seen < HEADER_BYTES
        self._seen += len(block)
        wanted = (in_header and self.drop_transaction_timeout and b"transaction_timeout" in block) or (
            self.drop_restrict and b"restrict " in block
        )
        if not wanted:
            return block
        lines = block.split(b"\n")
        for index, line in enumerate(lines):
            if in_header and self.drop_transaction_timeout and line.strip() == b"SET transaction_timeout = 0;":
                lines[index] = (
                    b"-- chrono-ci: the transaction_timeout setting was removed (the target is older than 17)"
                )
            elif self.drop_restrict and _META.match(line):
                lines[index] = b"-- chrono-ci: a restrict line was removed (this psql predates it)"
        return b"\n".join(lines)


@dataclass(frozen=True)
class SqlRestoreResult:
    psql_version: str
    statements_note: str


def run_sql_restore(
    archive: Path,
    compression: Compression,
    target: DatabaseTarget,
    tools: PgTools,
    server_major: int,
    *,
    preamble: str = "",
    decrypt: Callable[[], Decryptor] | None = None,
) -> SqlRestoreResult:
    """Restore `archive` into `target` in one transaction; raise RestoreFailed (target untouched) on any error."""
    sql_filter = SqlFilter(server_major, tools.version)
    args = [
        str(tools.tool("psql")),
        "-X",  # no ~/.psqlrc: its settings must not change what a restore does
        "--no-password",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-o",
        "/dev/null",
        "-f",
        "-",
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=target.libpq_env(),
    )
    assert proc.stdin is not None and proc.stderr is not None
    errors: deque[bytes] = deque(maxlen=200)
    drain = threading.Thread(target=lambda: errors.extend(proc.stderr or []), daemon=True)
    drain.start()
    stdin = proc.stdin
    broken = False

    def send(data: bytes) -> None:
        stdin.write(sql_filter.feed(data))

    try:
        with archive.open("rb") as handle:
            stdin.write(b"BEGIN;\n")
            if preamble:
                stdin.write(preamble.encode() + b"\n")
            # The rows are counted on the server afterwards; counting them here too would only cost CPU.
            read_archive(
                handle,
                compression,
                on_raw=send,
                count_rows=False,
                decryptor=decrypt() if decrypt is not None else None,
            )
            stdin.write(sql_filter.finish())
            # Only now, with every byte read and checked: an interrupted restore never reaches this line.
            stdin.write(b"\nCOMMIT;\n")
    except BrokenPipeError:
        broken = True  # psql stopped reading: it hit an error; its message tells which
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
    code = proc.wait()
    drain.join(timeout=10)
    if code != 0 or broken:
        raise explain_psql_failure(b"".join(errors).decode("utf-8", errors="replace"), target, code)
    return SqlRestoreResult(tools.version, "")


def explain_psql_failure(text: str, target: DatabaseTarget, code: int) -> RestoreFailed:
    lines = [line for line in text.splitlines() if line.strip()]
    detail = "\n".join(lines[-6:]) if lines else f"psql exited {code}"
    missing = missing_extensions(text)
    if missing:
        return MissingExtensions(
            missing,
            f"The server at {target.display()} lacks the extension(s) {', '.join(missing)} that the backup uses; "
            "the transaction was rolled back and nothing changed.",
            hint="Install the extension's package on that server (or use a server that has it), then run again. "
            "This is not damage in the archive.",
        )
    return RestoreFailed(
        f"The restore into {target.display()} failed and was rolled back; the database is exactly as before:\n{detail}",
        hint="Read psql's message above: a statement the target rejects (an older server, a missing role or "
        "extension), or a lost connection.",
    )


class MissingExtensions(RestoreFailed):
    """The target lacks extensions the backup uses: a property of the server, not damage in the archive."""

    def __init__(self, names: list[str], message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.names = names


def missing_extensions(text: str) -> list[str]:
    names = [a or b for a, b in _MISSING_EXTENSION.findall(text)]
    return sorted(set(names))
