"""The Supabase profile's dump: what `supabase db dump` does in three runs (roles, schema, data), in one
chrono-ci archive that a Supabase project accepts from its non-superuser `postgres` role (chrono_ci.restore.supabase
restores it).

The archive is one plain SQL stream, in the order Supabase documents for a restore:

1. a header line (`-- chrono-ci supabase archive {json}`) that says what the archive holds;
2. a skeleton of the managed schemas the data fills, which runs only in a chrono-ci scratch database that lacks
   them (restore-verification on a plain PostgreSQL); anywhere else it does nothing;
3. the roles (`pg_dumpall --roles-only`), Supabase's reserved roles left out, each custom role created only
   where it is missing;
4. the schema without Supabase's managed schemas, with the statements a Supabase project rejects commented out;
5. the app's own objects on Supabase's managed tables (triggers, policies, the functions they call, grants), which
   the schema part leaves out with those schemas (see chrono_ci.dump.supabase_additions);
6. `SET session_replication_role = replica;` and the data (COPY), which ends with pg_dump's own closing line, so
   that the pipeline's trailer check still proves the whole archive.

Schema, skeleton and data are read in one exported snapshot, so they agree with each other.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from chrono_ci import __version__
from chrono_ci.child_process import ChildProcess
from chrono_ci.dump import supabase_additions
from chrono_ci.dump.sql_quoting import quote_ident
from chrono_ci.dump.supabase_additions import Addition
from chrono_ci.dump.supabase_header import HEADER_MARK
from chrono_ci.dump.supabase_skeleton import wrap_skeleton
from chrono_ci.dump.supabase_sql import DataFilter, RolesSection, SchemaRewriter, rewrite_roles
from chrono_ci.errors import DumpFailed, ToolMissing
from chrono_ci.source.supabase_checks import session_pooler_url
from chrono_ci.source.supabase_facts import export_snapshot, inspect_source
from chrono_ci.source.supabase_platform import (
    DATA_DUMP_EXCLUDED,
    EXCLUDED_TABLES,
    RESERVED_ROLE,
    SCHEMA_DUMP_EXCLUDED,
)
from chrono_ci.source.target import DatabaseTarget, connect
from chrono_ci.source.tools import PgTools


@dataclass
class _Failure:
    part: str
    code: int
    reason: str = ""


class _PartsReader(io.RawIOBase):
    """The archive's SQL, produced on demand from the parts, one after another."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = memoryview(chunk)
        limit = len(self._pending) if size is None or size < 0 else size
        out = bytes(self._pending[:limit])
        self._pending = self._pending[limit:]
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class SupabaseDump:
    """Supabase's three dumps as one stream, with the same interface as DumpProcess (see chrono_ci.dump.pg_dump)."""

    def __init__(self, tools: PgTools, target: DatabaseTarget) -> None:
        self.tools = tools
        self.target = target
        for tool in ("pg_dump", "pg_dumpall"):
            if not self.tools.tool(tool).is_file():
                raise ToolMissing(
                    f"{tool} was not found in {self.tools.bin_dir}: a Supabase backup needs pg_dump and pg_dumpall "
                    "of the same installation.",
                    hint="Install the full PostgreSQL client (postgresql-client), or point PG_BIN_DIR at a folder "
                    "holding both.",
                )
        self._env = self.target.libpq_env()
        self._facts = inspect_source(self.target)
        self._snapshot_conn, snapshot = export_snapshot(self.target)
        self.additions = self._collect_additions()
        pg_dump = [str(self.tools.tool("pg_dump")), "--format=plain", "--no-password", "--quote-all-identifiers"]
        pinned = [f"--snapshot={snapshot}"] if snapshot else []
        self.commands: dict[str, list[str]] = {
            "roles": [
                str(self.tools.tool("pg_dumpall")),
                "--roles-only",
                "--no-role-passwords",  # non-superusers cannot read pg_authid; passwords are set again by hand
                "--no-comments",
                "--quote-all-identifiers",
                "--no-password",
                "-l",
                self.target.dbname,  # pg_dumpall would try `postgres`, then `template1`: a pooler knows only this
            ]
        }
        if self._facts.skeleton_schemas:
            self.commands["scratch-skeleton"] = [
                *pg_dump,
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                *pinned,
                *(f"--schema={quote_ident(s)}" for s in self._facts.skeleton_schemas),
            ]
        self.commands["schema"] = [
            *pg_dump,
            "--schema-only",
            *pinned,
            *(f"--exclude-schema={p}" for p in SCHEMA_DUMP_EXCLUDED),
        ]
        self.commands["data"] = [
            *pg_dump,
            "--data-only",
            *pinned,
            *(f"--exclude-schema={p}" for p in DATA_DUMP_EXCLUDED),
            *(f"--exclude-table={t}" for t in EXCLUDED_TABLES),
        ]
        self.parts: list[str] = list(self.commands)
        self.parts.insert(self.parts.index("schema") + 1, supabase_additions.PART)
        self.args: list[str] = self.commands["data"]
        self._child: ChildProcess | None = None
        self._children: list[ChildProcess] = []
        self._failure: _Failure | None = None
        self._done = False
        self._chunks: Generator[bytes, None, None] = self._generate()
        self._reader = _PartsReader(self._chunks)

    def _collect_additions(self) -> list[Addition]:
        """Read in the dump's snapshot, so that the app's objects agree with the schema and the data."""
        import psycopg

        try:
            if self._snapshot_conn is not None:
                return supabase_additions.collect(self._snapshot_conn, self._facts.managed_schemas, RESERVED_ROLE)
            with connect(self.target) as conn, conn.transaction():
                return supabase_additions.collect(conn, self._facts.managed_schemas, RESERVED_ROLE)
        except psycopg.Error as error:
            self._close_snapshot()
            raise DumpFailed(
                f"Could not read the objects of yours on Supabase's tables in {self.target.display()}: "
                f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}",
                hint="Nothing was dumped. Check that the role may read the catalog (Supabase's postgres may).",
            ) from None

    @property
    def stdout(self) -> IO[bytes]:
        return cast(IO[bytes], self._reader)

    # -- the stream --------------------------------------------------------------------------------------------

    def _start(self, part: str) -> ChildProcess:
        child = ChildProcess(part, self.commands[part], self._env)
        self._child = child
        self._children.append(child)
        return child

    def _finish(self, child: ChildProcess, trailer_seen: bool = True) -> bool:
        code = child.wait()
        self._child = None
        if code != 0:
            self._failure = _Failure(child.name, code)
        elif not trailer_seen:
            self._failure = _Failure(child.name, 1, "its output ended without its closing line")
        return self._failure is None

    def _buffered(self, part: str) -> str | None:
        child = self._start(part)
        data = b"".join(iter(lambda: child.read(1 << 16), b""))
        if not self._finish(child):
            return None
        return data.decode("utf-8", errors="surrogateescape")

    def _generate(self) -> Generator[bytes, None, None]:
        try:
            roles_text = self._buffered("roles")
            if roles_text is None:
                return
            roles = rewrite_roles(roles_text)
            if not roles.trailer_seen:
                self._failure = _Failure("roles", 1, "its output ended without its closing line")
                return
            skeleton = ""
            if "scratch-skeleton" in self.commands:
                text = self._buffered("scratch-skeleton")
                if text is None:
                    return
                rewriter = SchemaRewriter("scratch-skeleton")
                text = "\n".join(rewriter.line(line) for line in text.splitlines())
                if not rewriter.trailer_seen:
                    self._failure = _Failure("scratch-skeleton", 1, "its output ended without its closing line")
                    return
                skeleton = wrap_skeleton(
                    text,
                    self._facts.skeleton_schemas,
                    self._facts.reserved_roles,
                    self._facts.managed_schemas,
                    self._facts.extensions,
                )
            yield self._header(roles).encode()
            yield _encode(skeleton)
            yield _encode("-- chrono-ci: roles (pg_dumpall --roles-only)\n\n" + roles.sql + "\n")
            yield from self._schema()
            if self._failure is not None:
                return
            yield _encode(
                "\n-- chrono-ci: managed-additions (your triggers, policies, functions and grants on Supabase's "
                "tables)\n\n" + supabase_additions.part_sql(self.additions)
            )
            # Supabase's documented restore: triggers must not fire while rows are loaded (no double encryption).
            yield b"\n-- chrono-ci: data (pg_dump --data-only)\nSET session_replication_role = replica;\n\n"
            yield from self._data()
            if self._failure is None:
                self._done = True
        finally:
            if self._child is not None:
                self._child.kill()
                self._child = None
            self._close_snapshot()

    def _header(self, roles: RolesSection) -> str:
        facts = {
            "profile": "supabase",
            "format": 2,
            "parts": self.parts,
            "custom_roles": roles.custom_roles,
            "managed_additions": [item.facts() for item in self.additions],
            "source": self.target.display(),
            "tool_version": __version__,
        }
        return (
            HEADER_MARK + json.dumps(facts, ensure_ascii=False) + "\n"
            "-- A Supabase backup in the order of Supabase's documented restore: roles, schema, then data with\n"
            "-- session_replication_role = replica. Restore it with `chrono-ci recovery restore`, or by hand:\n"
            "--   psql --single-transaction -v ON_ERROR_STOP=1 -f THIS_FILE.sql -d TARGET_URL\n"
            "-- Statements a Supabase project rejects are commented out and marked '-- [chrono-ci]'.\n"
            "-- Storage files are not in a database dump: only the storage.objects rows that describe them.\n\n"
        )

    def _schema(self) -> Iterator[bytes]:
        child = self._start("schema")
        rewriter = SchemaRewriter("schema")
        carry = b""
        yield b"-- chrono-ci: schema (pg_dump --schema-only, Supabase's managed schemas left out)\n\n"
        while chunk := child.read(1 << 16):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                lines = data[:cut].decode("utf-8", errors="surrogateescape").split("\n")[:-1]
                yield _encode("".join(rewriter.line(line) + "\n" for line in lines))
        if carry:
            yield _encode(rewriter.line(carry.decode("utf-8", errors="surrogateescape")) + "\n")
        self._finish(child, rewriter.trailer_seen)

    def _data(self) -> Iterator[bytes]:
        child = self._start("data")
        data_filter = DataFilter()
        while chunk := child.read(1 << 20):
            out = data_filter.feed(chunk)
            if out:
                yield out
        yield data_filter.finish()
        self._finish(child)

    def _close_snapshot(self) -> None:
        import psycopg

        if self._snapshot_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._snapshot_conn.close()
            self._snapshot_conn = None

    # -- the DumpProcess interface ------------------------------------------------------------------------------

    def wait(self) -> int:
        if self._child is not None:
            self._child.wait()
        self._close_snapshot()
        if self._failure is not None:
            return self._failure.code or 1
        return 0 if self._done else 1

    def kill(self) -> None:
        if self._child is not None:
            self._child.kill()
        self._chunks.close()  # runs the generator's cleanup: the current child is killed
        self._close_snapshot()

    def stderr_text(self) -> str:
        texts = [f"[{child.name}] {child.stderr_text()}" for child in self._children if child.stderr_text()]
        return "\n".join(texts)

    def failure(self, code: int) -> DumpFailed:
        failed = self._failure or _Failure("data", code)
        child = next((c for c in reversed(self._children) if c.name == failed.part), None)
        text = child.stderr_text() if child else ""
        lines = [line for line in text.splitlines() if line.strip()]
        detail = failed.reason or ("\n".join(lines[-6:]) if lines else "(no message)")
        tool = "pg_dumpall" if failed.part == "roles" else "pg_dump"
        hint = "Nothing was kept: no archive was written and no older backup was removed. Fix the cause and run again."
        lower = text.lower()
        if "server version mismatch" in lower:
            hint = "pg_dump is older than the server; set PG_BIN_DIR to a newer PostgreSQL client. " + hint
        elif "row-level security" in lower:
            hint = "The role lacks BYPASSRLS; back up as postgres or a role with BYPASSRLS. " + hint
        elif "permission denied" in lower:
            hint = "The role may not read everything; Supabase recommends BYPASSRLS and pg_read_all_data. " + hint
        elif "prepared statement" in lower or "unsupported startup parameter" in lower:
            hint = (
                f"This looks like a transaction pooler; use the session pooler: {session_pooler_url(self.target)}. "
                + hint
            )
        return DumpFailed(
            f"{tool} failed on the {failed.part} part of the Supabase backup of {self.target.display()} "
            f"(exit code {failed.code}):\n{detail}",
            hint=hint,
        )


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def summary_line() -> str:
    return (
        "Supabase Storage files are not in a database dump: the archive holds the storage.objects rows that "
        "describe them, not the files. Copy the buckets separately."
    )
