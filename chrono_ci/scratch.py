"""Restore-verification: restore an archive into a throwaway database and compare every table's row count with
the counts recorded from the dump stream. Only a restore proves a backup (pitfalls: a table of contents is not a
test).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chrono_ci.embedded import EmbeddedServer
from chrono_ci.errors import ChronoError, RestoreFailed
from chrono_ci.pipeline import Decryptor
from chrono_ci.postgres import DatabaseTarget, choose_pg_tools, connect, parse_database_url, probe_server
from chrono_ci.settings import Compression
from chrono_ci.sqlrestore import MissingExtensions, run_sql_restore


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


def count_tables(target: DatabaseTarget, tables: list[str]) -> dict[str, int | None]:
    """count(*) for each 'schema.table'; None where the table does not exist."""
    found: dict[str, int | None] = {}
    with connect(target) as conn:
        for qualified in tables:
            schema, _, table = qualified.partition(".")
            exists = conn.execute(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (schema, table),
            ).fetchone()
            if exists is None:
                found[qualified] = None
                continue
            ident = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
            row = conn.execute(f"SELECT count(*) FROM {ident}").fetchone()
            found[qualified] = int(str(row[0])) if row else None
    return found


def compare_counts(expected: dict[str, int], found: dict[str, int | None]) -> dict[str, tuple[int | None, int | None]]:
    return {name: (expected.get(name), found.get(name)) for name in expected if expected[name] != found.get(name)}


def restore_verify(
    archive: Path,
    compression: Compression,
    tables: dict[str, int],
    scratch: DatabaseTarget | None,
    pg_bin_dir: Path | None = None,
    decrypt: Callable[[], Decryptor] | None = None,
) -> RestoreCheck:
    with scratch_database(scratch) as (target, where):
        server = probe_server(target)
        tools = choose_pg_tools(server, pg_bin_dir)
        try:
            run_sql_restore(archive, compression, target, tools, server.major, decrypt=decrypt)
        except MissingExtensions as failure:
            return RestoreCheck(False, where, missing_extensions=failure.names, error=failure.message)
        except RestoreFailed as failure:
            return RestoreCheck(False, where, error=failure.message.splitlines()[-1])
        found = count_tables(target, sorted(tables))
    mismatches = compare_counts(tables, found)
    return RestoreCheck(not mismatches, where, tables_compared=len(tables), mismatches=mismatches)
