"""Restore-verification: restore an archive into a throwaway database and compare every table's row count with
the counts recorded from the dump stream, inside the restore's transaction, which is then rolled back. Only a
restore proves a backup (a table of contents is not a test).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chrono_ci.config.options import Compression
from chrono_ci.errors import ChronoError, RestoreFailed, VerificationFailed
from chrono_ci.pipeline.read import Decryptor
from chrono_ci.restore.replay import CountMismatch, Expected, MissingExtensions, replay_archive
from chrono_ci.source.embedded import EmbeddedServer
from chrono_ci.source.target import DatabaseTarget, connect, parse_database_url
from chrono_ci.verify.integrity import IntegrityReport


@dataclass
class RestoreCheck:
    ok: bool
    scratch: str  # where it ran, for the report (no password)
    tables_compared: int = 0
    mismatches: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # table: (expected, found)
    missing_extensions: list[str] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": "restore",
            "ok": self.ok,
            "scratch": self.scratch,
            "tables_compared": self.tables_compared,
            "mismatches": {name: list(pair) for name, pair in self.mismatches.items()},
            "missing_extensions": self.missing_extensions,
            "error": self.error,
        }

    def summary(self) -> str:
        if self.ok:
            return f"restored into {self.scratch}: {self.tables_compared} tables, every row count matches"
        if self.missing_extensions:
            return f"the scratch server lacks extension(s) {', '.join(self.missing_extensions)} (not archive damage)"
        if self.mismatches:
            shown = ", ".join(f"{n} ({e} recorded, {f} restored)" for n, (e, f) in list(self.mismatches.items())[:5])
            return f"row counts differ after the restore: {shown}"
        return f"the restore failed: {self.error}"


@contextlib.contextmanager
def scratch_database(scratch: DatabaseTarget | None) -> Iterator[tuple[DatabaseTarget, str]]:
    """A fresh temporary database, dropped afterwards: on --scratch-url's server, or a throwaway embedded one."""
    name = f"chrono_verify_{secrets.token_hex(6)}"
    if scratch is None:
        with EmbeddedServer() as server:
            admin = parse_database_url(server.url(), "scratch server")
            with connect(admin) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            yield admin.with_database(name), "a throwaway embedded PostgreSQL"
        return
    with connect(scratch) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield scratch.with_database(name), f"a temporary database on {scratch.host}:{scratch.port}"
    finally:
        with contextlib.suppress(ChronoError), connect(scratch) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restore_verify(
    archive: Path,
    compression: Compression,
    expected: Expected,
    scratch: DatabaseTarget | None,
    *,
    profile: str = "postgres",
    decrypt: Callable[[], Decryptor] | None = None,
    integrity: IntegrityReport | None = None,
) -> RestoreCheck:
    """Restore into a throwaway database, compare every table's row count inside the transaction, roll back.

    `integrity` receives the archive's named checks as the restore's stream found them."""
    with scratch_database(scratch) as (target, where):
        try:
            outcome = replay_archive(
                archive,
                compression,
                target,
                expected=expected,
                profile=profile,
                commit=False,
                decrypt=decrypt,
                integrity=integrity,
            )
        except MissingExtensions as failure:
            return RestoreCheck(False, where, missing_extensions=failure.names, error=failure.message)
        except CountMismatch as failure:
            return RestoreCheck(False, where, tables_compared=len(failure.mismatches), mismatches=failure.mismatches)
        except (RestoreFailed, VerificationFailed) as failure:
            # One line for the summary, with the server's own words in it ("No space left on device").
            return RestoreCheck(False, where, error=" ".join(failure.message.split()))
    return RestoreCheck(True, where, tables_compared=len(outcome.tables))
