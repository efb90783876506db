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
from pathlib import Path

from chrono_ci.errors import RestoreFailed
from chrono_ci.pipeline import Decryptor, read_archive
from chrono_ci.postgres import DatabaseTarget, PgTools
from chrono_ci.settings import Compression

# The first psql of each branch that knows \restrict (CVE-2025-8714).
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
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
    """Rewrites the few lines a target cannot take; everything else passes through untouched.

    Lines are only ever looked at outside COPY data (a table may hold a row that reads `COMMIT;`), and each
    rewritten line becomes a comment, so line numbers in psql's messages still match the archive.
    Rewritten: `SET transaction_timeout` for servers older than 17; `\\restrict` lines for a psql that predates
    them; and the `BEGIN;` / `COMMIT;` that pg_dump puts around large-object data, which would otherwise commit
    the restore's one transaction half-way through.
    """

    def __init__(self, server_major: int, psql_version: str) -> None:
        self.drop_transaction_timeout = server_major < 17
        self.drop_restrict = not psql_knows_restrict(psql_version)
        self._carry = b""
        self._in_copy = False
        self._copy_line_start = True
        self._blobs = "outside"  # "header" after a BLOBS comment, "inside" between its BEGIN and COMMIT

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data
        self._carry = b""
        out: list[bytes] = []
        pos = 0
        size = len(data)
        while pos < size:
            if self._in_copy:
                end = self._copy_end(data, pos)
                if end == -1:
                    # The terminator line may begin in the last bytes: keep a possible start of it for next time.
                    last = data.rfind(b"\n", pos)
                    line_start = last + 1 if last != -1 else pos
                    at_line_start = last != -1 or self._copy_line_start
                    tail = data[line_start:]
                    if at_line_start and len(tail) < 3 and b"\\.\n".startswith(tail):
                        out.append(data[pos:line_start])
                        self._carry, self._copy_line_start = tail, True
                    else:
                        out.append(data[pos:])
                        self._copy_line_start = data.endswith(b"\n")
                    return b"".join(out)
                out.append(data[pos:end])
                pos, self._in_copy = end, False
                continue
            newline = data.find(b"\n", pos)
            if newline == -1:
                self._carry = data[pos:]
                break
            out.append(self._line(data[pos:newline]) + b"\n")
            pos = newline + 1
        return b"".join(out)

    def finish(self) -> bytes:
        rest, self._carry = self._carry, b""
        if self._in_copy or not rest:
            return rest
        return self._line(rest)

    def _copy_end(self, data: bytes, pos: int) -> int:
        """Where the COPY data ends (just past its `\\.` line), or -1."""
        if self._copy_line_start and data.startswith(b"\\.\n", pos):
            return pos + 3
        found = data.find(b"\n\\.\n", pos)
        return found + 4 if found != -1 else -1

    def _line(self, line: bytes) -> bytes:
        if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            self._in_copy, self._copy_line_start = True, True
            return line
        stripped = line.strip()
        if self.drop_transaction_timeout and stripped == b"SET transaction_timeout = 0;":
            return b"-- chrono-ci: the transaction_timeout setting was removed (the target is older than 17)"
        if self.drop_restrict and _META.match(line):
            return b"-- chrono-ci: a restrict line was removed (this psql predates it)"
        if line.startswith(b"-- Data for Name: ") and b"; Type: BLOBS;" in line:
            self._blobs = "header"
        elif self._blobs == "header" and stripped and not stripped.startswith(b"--"):
            if line == b"BEGIN;":
                self._blobs = "inside"
                return b"-- chrono-ci: BEGIN; of the large-object data removed (the restore is one transaction)"
            self._blobs = "outside"
        elif self._blobs == "inside" and line == b"COMMIT;":
            self._blobs = "outside"
            return b"-- chrono-ci: COMMIT; of the large-object data removed (the restore is one transaction)"
        return line


def run_sql_restore(
    archive: Path,
    compression: Compression,
    target: DatabaseTarget,
    tools: PgTools,
    server_major: int,
    *,
    preamble: str = "",
    decrypt: Callable[[], Decryptor] | None = None,
) -> None:
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
