"""The Supabase profile: what `supabase db dump` does in three runs (roles, schema, data), in one chrono-ci archive,
and a restore that a Supabase project accepts from its non-superuser `postgres` role.

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
import fnmatch
import io
import json
import re
import socket
import subprocess
import threading
import zlib
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import psycopg
import zstandard

from chrono_ci import __version__
from chrono_ci.dump import supabase_additions
from chrono_ci.dump.pg_dump import STDERR_KEEP
from chrono_ci.dump.supabase_additions import Addition
from chrono_ci.errors import ChronoError, ConfigError, ConnectionFailed, DumpFailed, ToolMissing
from chrono_ci.restore.replay import Lookup, Proof
from chrono_ci.source.target import DatabaseTarget, PgTools, connect

if TYPE_CHECKING:
    from chrono_ci.archive.catalog import ArchiveFile
    from chrono_ci.restore.run import SchemaState

# Supabase CLI (apps/cli-go/pkg/migration/dump.go): schemas whose structure belongs to the platform.
SCHEMA_DUMP_EXCLUDED = (
    "information_schema", "pg_*", "_analytics", "_realtime", "_supavisor", "auth", "etl", "extensions",
    "pgbouncer", "realtime", "storage", "supabase_functions", "supabase_migrations", "cron", "dbdev", "graphql",
    "graphql_public", "net", "pgmq", "pgsodium", "pgsodium_masks", "pgtle", "repack", "tiger", "tiger_data",
    "timescaledb_*", "_timescaledb_*", "topology", "vault",
)  # fmt: skip
# The data dump leaves out fewer: the rows of auth, storage, cron, net, pgmq and supabase_functions travel.
DATA_DUMP_EXCLUDED = (
    "information_schema", "pg_*", "graphql", "graphql_public", "pgsodium", "pgsodium_masks", "pgtle", "repack",
    "tiger", "tiger_data", "timescaledb_*", "_timescaledb_*", "topology", "vault", "etl", "extensions",
    "pgbouncer", "realtime", "supabase_migrations", "_analytics", "_realtime", "_supavisor",
)  # fmt: skip
# The platform's own migration history: a new project has its own, which must not be overwritten.
EXCLUDED_TABLES = ("auth.schema_migrations", "storage.migrations", "supabase_functions.migrations")
RESERVED_ROLE = re.compile(
    r"anon|authenticated|authenticator|cli_login_.*|dashboard_user|pgbouncer|postgres|service_role|supabase_.*"
    r"|pgsodium_key.*|pgtle_admin"
)
TRANSACTION_POOLER_PORT = 6543
DIRECT_HOST = re.compile(r"db\.([a-z0-9]+)\.supabase\.(?:co|com|net|in|red)", re.IGNORECASE)
POOLER_HOST = re.compile(r"(?:aws-\d+-)?([a-z0-9-]+)\.pooler\.supabase\.com", re.IGNORECASE)
POOLER_USER = re.compile(r"postgres\.([a-z0-9]+)", re.IGNORECASE)
HEADER_MARK = "-- chrono-ci supabase archive "
# scratch.py names its temporary databases so; the skeleton runs only there.
SCRATCH_PREFIX = "chrono_verify_"
PARTS_TRAILER = {
    "roles": "-- PostgreSQL database cluster dump complete",
    "scratch-skeleton": "-- PostgreSQL database dump complete",
    "schema": "-- PostgreSQL database dump complete",
}
NEUTRALISED = "-- [chrono-ci] "
HOLD_BACK = 4096  # the data's last bytes, kept back to neutralise its closing \unrestrict line
HEADER_SCAN = 64 * 1024


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def is_managed_schema(name: str) -> bool:
    """A schema whose structure Supabase owns: never dumped as schema, never dropped by a restore."""
    return _matches(name, SCHEMA_DUMP_EXCLUDED)


def data_is_dumped(schema: str, table: str) -> bool:
    return not _matches(schema, DATA_DUMP_EXCLUDED) and f"{schema}.{table}" not in EXCLUDED_TABLES


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _dollar(body: str, base: str = "chrono") -> str:
    """A dollar-quote tag that does not occur in `body`."""
    tag, n = f"${base}$", 0
    while tag in body:
        n += 1
        tag = f"${base}{n}$"
    return tag


def _do(body: str) -> str:
    tag = _dollar(body)
    return f"DO {tag}\n{body}\n{tag};\n"


# ---------------------------------------------------------------------------------------------------------------
# Connection diagnostics


def project_ref(target: DatabaseTarget) -> str | None:
    for pattern, value in ((DIRECT_HOST, target.host), (POOLER_USER, target.user)):
        match = pattern.fullmatch(value)
        if match:
            return match.group(1).lower()
    return None


def session_pooler_url(target: DatabaseTarget) -> str:
    ref = project_ref(target) or "<ref>"
    pooler = POOLER_HOST.fullmatch(target.host)
    host = target.host if pooler else "aws-0-<region>.pooler.supabase.com"
    return f"postgresql://postgres.{ref}:PASSWORD@{host}:5432/{target.dbname}"


def diagnose_url(target: DatabaseTarget) -> None:
    """Refuse what cannot work for pg_dump, before dumping: the transaction pooler (without connecting to it), a
    PgBouncer in transaction mode, and the IPv6-only direct host on a machine without IPv6."""
    if target.port == TRANSACTION_POOLER_PORT:
        raise ConfigError(
            f"{target.setting} points at port {TRANSACTION_POOLER_PORT}, Supabase's transaction pooler: pg_dump "
            "cannot work through it (a dump is one session holding one snapshot; a transaction pooler hands each "
            "transaction to any server connection). No connection was attempted.",
            hint=f"Use the session pooler, port 5432: {session_pooler_url(target)} (dashboard: Connect > Session "
            "pooler), or the direct connection if this machine has IPv6.",
        )
    direct = DIRECT_HOST.fullmatch(target.host)
    try:
        conn = connect(target)
    except ConnectionFailed as failure:
        if direct is not None and _is_network_failure(failure):
            raise _ipv6_explanation(target, failure) from None
        if POOLER_HOST.fullmatch(target.host) and "tenant or user not found" in failure.message.lower():
            raise ConnectionFailed(
                f"Supabase's pooler does not know the user {target.user!r} ({target.setting}).",
                hint="Through the pooler the user name carries the project: postgres.<ref>, as in "
                f"{session_pooler_url(target)}.",
            ) from None
        raise
    with conn:
        pooled = _transaction_pooling(target, conn)
    if pooled:
        raise ConfigError(
            f"{target.setting} leads to a connection pooler in transaction mode ({target.host}:{target.port}): "
            "consecutive statements of one session ran on different server connections, and pg_dump needs one.",
            hint=f"Use a session-mode pooler or a direct connection; for Supabase the session pooler: "
            f"{session_pooler_url(target)}.",
        )


def _is_network_failure(failure: ConnectionFailed) -> bool:
    # Wrong credentials or a missing database are answers from a server that was reached.
    return not failure.message.startswith(("Wrong password", "The server at", "The database in"))


def _address_families(host: str) -> set[int] | None:
    try:
        return {info[0] for info in socket.getaddrinfo(host, 5432, proto=socket.IPPROTO_TCP)}
    except OSError:
        return None


def _ipv6_explanation(target: DatabaseTarget, failure: ConnectionFailed) -> ChronoError:
    families = _address_families(target.host)
    if families is not None and socket.AF_INET in families:
        return failure  # the IPv4 add-on is on: something else is wrong, and the original message says what
    if families is None:
        found = "does not resolve from this machine"
    else:
        found = "resolves to IPv6 addresses only (AAAA records, no A record)"
    return ConnectionFailed(
        f"Could not connect to Supabase's direct host {target.host} ({target.setting}): the host {found}. The "
        "direct connection db.<ref>.supabase.co is IPv6-only unless the project has the IPv4 add-on, and "
        f"GitHub-hosted runners (and many networks) have no IPv6. libpq said: {failure.message}",
        hint=f"Use the session pooler, which has IPv4: {session_pooler_url(target)} (the user is postgres.<ref>; "
        "copy the exact host from the dashboard: Connect > Session pooler). Or enable the IPv4 add-on, or run on "
        "a machine with IPv6.",
    )


def _one(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> object:
    row = conn.execute(sql).fetchone()
    return row[0] if row else None


def _transaction_pooling(target: DatabaseTarget, first: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when two statements of one client session ran on different server connections.

    A direct or session-pooled connection keeps its backend and its settings for its whole life; a transaction
    pooler may give a second client the backend the first one holds between transactions.
    """
    pid = _one(first, "SELECT pg_catalog.pg_backend_pid()")
    first.execute("SELECT pg_catalog.set_config('chrono.session_probe', 'kept', false)")
    seen: list[object] = []

    def second_client() -> None:
        with (
            contextlib.suppress(ChronoError, psycopg.Error),
            connect(target, timeout=5) as second,
            second.transaction(),
        ):
            seen.append(_one(second, "SELECT pg_catalog.pg_backend_pid()"))

    thread = threading.Thread(target=second_client, name="pooler-probe", daemon=True)
    thread.start()
    thread.join(10)  # a full session pool makes the second client wait: that is not what we look for
    row = first.execute(
        "SELECT pg_catalog.current_setting('chrono.session_probe', true), pg_catalog.pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return (bool(seen) and seen[0] == pid) or row[0] != "kept" or row[1] != pid


# ---------------------------------------------------------------------------------------------------------------
# Read privileges


def check_read_privileges(target: DatabaseTarget) -> None:
    """Stop before dumping when the role cannot read every row pg_dump will read (row-level security, missing
    SELECT or USAGE), naming the tables and what is missing."""
    with connect(target) as conn:
        me = conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert me is not None
        user, superuser, bypass = str(me[0]), bool(me[1]), bool(me[2])
        if superuser:
            return
        rows = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, "
            "pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'), "
            "pg_catalog.has_schema_privilege(n.oid, 'USAGE'), "
            "CASE WHEN pg_catalog.has_schema_privilege(n.oid, 'USAGE') "
            "THEN pg_catalog.has_table_privilege(c.oid, 'SELECT') END "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
        ).fetchall()
    rls: list[str] = []
    unreadable: list[str] = []
    schemas: set[str] = set()
    for schema, table, _kind, secured, forced, owner, usage, select in rows:
        schema, table = str(schema), str(table)
        if _matches(schema, DATA_DUMP_EXCLUDED):
            continue
        name = f"{schema}.{table}"
        # pg_dump locks every table it describes (SELECT needed), and reads the rows of the data part's.
        if not usage:
            schemas.add(schema)
        elif not select:
            unreadable.append(name)
        elif secured and not bypass and (forced or not owner) and data_is_dumped(schema, table):
            rls.append(name)
    if not (rls or unreadable or schemas):
        return
    parts = []
    if rls:
        parts.append(
            f"row-level security is enabled on {_listed(rls)}, and {user} has neither BYPASSRLS nor "
            "superuser (pg_dump would stop with 'query would be affected by row-level security policy')"
        )
    if unreadable:
        parts.append(f"{user} lacks SELECT on {_listed(unreadable)}")
    if schemas:
        parts.append(f"{user} lacks USAGE on schema(s) {_listed(sorted(schemas))}")
    raise DumpFailed(
        f"The role {user} cannot read everything a Supabase backup holds, so nothing was dumped: "
        + "; ".join(parts)
        + ".",
        hint="Back up as the postgres role (it has BYPASSRLS), or with the backup role Supabase recommends: "
        "CREATE ROLE backup_reader LOGIN PASSWORD '...' BYPASSRLS; GRANT pg_read_all_data TO backup_reader; "
        "ALTER ROLE backup_reader SET default_transaction_read_only = on;",
    )


def _listed(names: Sequence[str], shown: int = 8) -> str:
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# ---------------------------------------------------------------------------------------------------------------
# SQL rewriting


_DOLLAR = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")


class _Lexer:
    """Just enough of SQL's lexical rules to know whether a line starts outside any string or function body, so
    that a rewrite never touches the inside of a function that happens to look like a statement."""

    def __init__(self) -> None:
        self.quote: str | None = None
        self.dollar: str | None = None

    @property
    def at_top(self) -> bool:
        return self.quote is None and self.dollar is None

    def feed(self, line: str) -> None:
        i, size = 0, len(line)
        while i < size:
            if self.dollar is not None:
                end = line.find(self.dollar, i)
                if end < 0:
                    return
                i, self.dollar = end + len(self.dollar), None
            elif self.quote is not None:
                end = line.find(self.quote, i)
                if end < 0:
                    return
                if end + 1 < size and line[end + 1] == self.quote:
                    i = end + 2
                else:
                    i, self.quote = end + 1, None
            else:
                char = line[i]
                if char == "-" and line.startswith("--", i):
                    return
                if char in "'\"":
                    self.quote = char
                    i += 1
                    continue
                if char == "$" and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] in "_$")):
                    match = _DOLLAR.match(line, i)
                    if match:
                        self.dollar = match.group(0)
                        i = match.end()
                        continue
                i += 1


_GRANT_ON = re.compile(r'^(?:GRANT|REVOKE) .*? ON (?:[A-Z]+ )*"((?:[^"]|"")+)"')
_STATEMENT_RULES = (
    # Event triggers need a superuser; Supabase installs its own.
    re.compile(r"^CREATE EVENT TRIGGER "),
    re.compile(r"^(?:ALTER|COMMENT ON) EVENT TRIGGER "),
    # The realtime publication exists in every project and belongs to the platform; tables are still added to it.
    re.compile(r'^CREATE PUBLICATION "supabase_realtime'),
    re.compile(r'^ALTER PUBLICATION "supabase_realtime[^"]*" OWNER TO '),
    re.compile(r'^ALTER PUBLICATION "supabase_realtime_'),
    re.compile(r'^COMMENT ON PUBLICATION "supabase_realtime'),
    # Users cannot act as Supabase's admin roles.
    re.compile(r'^ALTER DEFAULT PRIVILEGES FOR ROLE "supabase_[^"]*"'),
    re.compile(r'^ALTER .* OWNER TO "supabase_[^"]*";$'),
    re.compile(r"^ALTER FOREIGN DATA WRAPPER .* OWNER TO "),
    # Only an extension's owner may comment on it.
    re.compile(r"^COMMENT ON EXTENSION "),
    re.compile(r'^CREATE POLICY "cron_job_'),
    re.compile(r'^ALTER TABLE "cron"\.'),
    # pg_dump >= 17 writes it; servers < 17 reject it.
    re.compile(r"^SET transaction_timeout = "),
    # The CVE-2025-8714 guard lines break older psql builds and every non-psql restorer.
    re.compile(r"^\\(?:un)?restrict "),
)
_FIXED_SCHEMA_EXTENSION = re.compile(r'^(CREATE EXTENSION IF NOT EXISTS "(?:pg_tle|pgsodium)") WITH SCHEMA .*;$')


class SchemaRewriter:
    """Line by line, comments out the schema statements a Supabase project rejects, as Supabase's CLI does."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.lexer = _Lexer()
        self.skipping = False
        self.trailer_seen = False

    def line(self, text: str) -> str:
        top = self.lexer.at_top
        self.lexer.feed(text)
        if self.skipping:
            self.skipping = not (self.lexer.at_top and text.rstrip().endswith(";"))
            return NEUTRALISED + text
        if not top:
            return text
        if text == PARTS_TRAILER[self.part]:
            self.trailer_seen = True
            # Only the data's own closing line may end the archive: the pipeline's check relies on it.
            return f"-- chrono-ci: the {self.part} part is complete"
        fixed = _FIXED_SCHEMA_EXTENSION.match(text)
        if fixed:
            return fixed.group(1) + ";"
        grant = _GRANT_ON.match(text)
        if (grant and is_managed_schema(grant.group(1).replace('""', '"'))) or any(
            rule.match(text) for rule in _STATEMENT_RULES
        ):
            self.skipping = not (self.lexer.at_top and text.rstrip().endswith(";"))
            return NEUTRALISED + text
        return text


_CREATE_ROLE = re.compile(r'^CREATE ROLE ("(?:[^"]|"")+");$')
_ALTER_ROLE = re.compile(r'^ALTER ROLE ("(?:[^"]|"")+") (.*)$')
_GRANT_ROLE = re.compile(r'^GRANT ("(?:[^"]|"")+") TO ("(?:[^"]|"")+")(.*?)(?: GRANTED BY "(?:[^"]|"")+")?;$')


_DEFAULT_ATTRIBUTES = re.compile(
    r" (?:NOSUPERUSER|NOCREATEDB|NOCREATEROLE|INHERIT|NOLOGIN|NOREPLICATION|NOBYPASSRLS)(?=[ ;])"
)


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"')


@dataclass
class RolesSection:
    sql: str
    custom_roles: list[str]
    reserved_roles: list[str]
    trailer_seen: bool


def rewrite_roles(text: str) -> RolesSection:
    """pg_dumpall --roles-only output -> idempotent SQL a non-superuser can run: Supabase's reserved roles left
    alone, custom roles created only where missing (with their attributes and settings), memberships granted only
    where missing."""
    custom: dict[str, list[str]] = {}
    reserved: list[str] = []
    grants: list[str] = []
    out: list[str] = []
    trailer = False
    for line in text.splitlines():
        create = _CREATE_ROLE.match(line)
        alter = _ALTER_ROLE.match(line)
        grant = _GRANT_ROLE.match(line)
        if line == PARTS_TRAILER["roles"]:
            trailer = True
            out.append("-- chrono-ci: the roles part is complete")
        elif line.startswith(("\\restrict ", "\\unrestrict ")):
            out.append(NEUTRALISED + line)
        elif create or alter:
            found = create or alter
            assert found is not None
            name = _unquote(found.group(1))
            if RESERVED_ROLE.fullmatch(name):
                if create:
                    reserved.append(name)
                out.append(NEUTRALISED + "reserved by Supabase: " + line)
            elif create:
                custom[name] = []
                out.append(f"-- role {name}: created below if missing")
            else:
                # The role is altered only right after this restore created it, so CREATE ROLE's defaults are
                # in force; restating them needs privileges a non-superuser may lack (NOSUPERUSER, NOCREATEDB).
                statement = _DEFAULT_ATTRIBUTES.sub("", line)
                if not statement.endswith(" WITH;"):
                    custom.setdefault(name, []).append(statement)
        elif grant:
            member = _unquote(grant.group(2))
            if RESERVED_ROLE.fullmatch(member):
                out.append(NEUTRALISED + "reserved by Supabase: " + line)
            else:
                grants.append(f"GRANT {grant.group(1)} TO {grant.group(2)}{grant.group(3)};")
                out.append(f"-- membership {_unquote(grant.group(1))} -> {member}: granted below if missing")
        elif line.startswith("GRANT ") and " ON PARAMETER " in line:
            out.append(NEUTRALISED + "needs a superuser: " + line)
        else:
            out.append(line)
    sql = "\n".join(out) + "\n\n"
    for name, statements in custom.items():
        sql += _do(_create_role_body(name, statements))
    for statement in grants:
        match = _GRANT_ROLE.match(statement)
        assert match is not None
        role, member = _literal(_unquote(match.group(1))), _literal(_unquote(match.group(2)))
        sql += _do(
            "BEGIN\n"
            "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m\n"
            "                 JOIN pg_catalog.pg_roles r ON r.oid = m.roleid\n"
            "                 JOIN pg_catalog.pg_roles u ON u.oid = m.member\n"
            f"                 WHERE r.rolname = {role} AND u.rolname = {member}) THEN\n"
            f"    EXECUTE {_literal(statement.rstrip(';'))};\n"
            "  END IF;\n"
            "END"
        )
    return RolesSection(sql, list(custom), reserved, trailer)


def _create_role_body(name: str, statements: list[str]) -> str:
    literal = _literal(name)
    lines = [
        "BEGIN",
        f"  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {literal}) THEN",
        "    RETURN;  -- an existing role is the target's: it is left as it is",
        "  END IF;",
        "  IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN",
        f"    RAISE EXCEPTION 'chrono-ci: the backup''s role % does not exist here, and role % may not create it "
        f"(it lacks CREATEROLE)', {literal}, current_user",
        "      USING HINT = 'Create the role first, or restore as a role with CREATEROLE "
        "(Supabase''s postgres has it).';",
        "  END IF;",
        f"  EXECUTE {_literal('CREATE ROLE ' + _ident(name))};",
        *(f"  EXECUTE {_literal(statement.rstrip(';'))};" for statement in statements),
        "END",
    ]
    return "\n".join(lines)


def wrap_skeleton(
    text: str,
    schemas: Sequence[str],
    reserved: Sequence[str],
    managed: Sequence[str],
    extensions: Sequence[tuple[str, str]] = (),
) -> str:
    """The managed schemas the data fills, as statements that run only in a chrono-ci scratch database lacking
    them. Each pg_dump entry runs on its own: one that cannot (a trigger calling a user function not yet
    restored) is skipped with a warning, which a scratch restore can afford and a real one never sees.

    The source's extensions are created first where the scratch server has them: Supabase's tables use their
    functions (storage.objects defaults to extensions.uuid_generate_v4()), and the schema part, which enables
    them otherwise, comes after the skeleton. One the server lacks is left to the schema part, whose
    CREATE EXTENSION then names it."""
    scratch_like = _literal(SCRATCH_PREFIX.replace("_", "\\_") + "%")
    absent = " AND ".join(f"pg_catalog.to_regnamespace({_literal(s)}) IS NULL" for s in schemas)
    creates = "".join(
        f"    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {_literal(r)}) THEN\n"
        f"      BEGIN EXECUTE {_literal('CREATE ROLE ' + _ident(r))};\n"
        "      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'chrono-ci scratch skeleton: %', SQLERRM; END;\n"
        "    END IF;\n"
        for r in reserved
    )
    empties = "".join(
        f"    EXECUTE {_literal('CREATE SCHEMA IF NOT EXISTS ' + _ident(s))};\n" for s in managed if s not in schemas
    )
    enable = "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}"
    enabled = "".join(
        f"    IF pg_catalog.to_regnamespace({_literal(schema)}) IS NOT NULL THEN\n"
        f"      BEGIN EXECUTE {_literal(enable.format(_ident(name), _ident(schema)))};\n"
        "      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'chrono-ci scratch skeleton: %', SQLERRM; END;\n"
        "    END IF;\n"
        for name, schema in extensions
    )
    out = [
        "-- Restore-verification only: in a chrono-ci scratch database without Supabase's schemas, build the",
        "-- managed tables the data fills. In a Supabase project (or any other database) this does nothing.",
        _do(
            "BEGIN\n"
            "  IF pg_catalog.current_setting('chrono.restore', true) IS DISTINCT FROM 'on'\n"
            f"     AND pg_catalog.current_database() LIKE {scratch_like}\n"
            f"     AND {absent} THEN\n"
            "    PERFORM pg_catalog.set_config('chrono.skeleton', 'on', false);\n"
            "    PERFORM pg_catalog.set_config('check_function_bodies', 'off', false);\n"
            "    PERFORM pg_catalog.set_config('search_path', '', false);\n"
            f"{creates}{empties}{enabled}"
            # Every project has it, and the schema adds the user's tables to it.
            "    IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime') THEN\n"
            "      BEGIN CREATE PUBLICATION supabase_realtime;\n"
            "      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'chrono-ci scratch skeleton: %', SQLERRM; END;\n"
            "    END IF;\n"
            "  END IF;\n"
            "END"
        ),
    ]
    for entry in _toc_entries(text):
        tag = _dollar(entry, "chrono_ddl")
        out.append(
            _do(
                "BEGIN\n"
                "  IF pg_catalog.current_setting('chrono.skeleton', true) = 'on' THEN\n"
                f"    EXECUTE {tag}{entry}{tag};\n"
                "  END IF;\n"
                "EXCEPTION WHEN OTHERS THEN\n"
                "  RAISE WARNING 'chrono-ci scratch skeleton: skipped (%)', SQLERRM;\n"
                "END"
            )
        )
    out.append(_do("BEGIN\n  PERFORM pg_catalog.set_config('chrono.skeleton', 'off', false);\nEND"))
    return "\n".join(out) + "\n"


def _toc_entries(text: str) -> Iterator[str]:
    """pg_dump's entries, split at its `-- Name: ...; Type: ...` comment blocks; the SET header is left out."""
    lines = text.splitlines()
    current: list[str] | None = None
    for index, line in enumerate(lines):
        starts = line == "--" and index + 1 < len(lines) and lines[index + 1].startswith("-- Name: ")
        if starts:
            if current is not None and any(s.strip() and not s.startswith("--") for s in current):
                yield "\n".join(current)
            current = []
        if current is not None:
            current.append(line)
    if current is not None and any(s.strip() and not s.startswith("--") for s in current):
        yield "\n".join(current)


_META_LINE = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+$")


class DataFilter:
    """The data part passes through untouched, except its first lines (pg_dump's SET header and \\restrict) and
    its closing \\unrestrict line, which are neutralised as in the other parts."""

    def __init__(self) -> None:
        self.in_header = True
        self._head = b""
        self._tail = b""
        self._tail_at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if not self.in_header:
            return self._pass(chunk)
        data = self._head + chunk
        out: list[bytes] = []
        pos = 0
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                break
            line = data[pos:newline]
            if line.startswith(b"COPY ") or pos > HEADER_SCAN:
                self.in_header = False
                break
            out.append(_neutralise_data_line(line) + b"\n")
            pos = newline + 1
        if self.in_header:
            self._head = data[pos:]
            return b"".join(out)
        self._head = b""
        return b"".join(out) + self._pass(data[pos:])

    def _pass(self, data: bytes) -> bytes:
        buffer = self._tail + data
        if len(buffer) <= HOLD_BACK:
            self._tail = buffer
            return b""
        cut = len(buffer) - HOLD_BACK
        self._tail_at_line_start = buffer[cut - 1] == 0x0A
        self._tail = buffer[cut:]
        return buffer[:cut]

    def finish(self) -> bytes:
        head = b""
        if self.in_header and self._head:
            head = b"\n".join(_neutralise_data_line(line) for line in self._head.split(b"\n"))
        lines = self._tail.split(b"\n")
        for index, line in enumerate(lines):
            if (index > 0 or self._tail_at_line_start) and _META_LINE.match(line):
                lines[index] = NEUTRALISED.encode() + line
        return head + b"\n".join(lines)


def _neutralise_data_line(line: bytes) -> bytes:
    if _META_LINE.match(line) or line.startswith(b"SET transaction_timeout = "):
        return NEUTRALISED.encode() + line
    return line


# ---------------------------------------------------------------------------------------------------------------
# The dump


@dataclass
class _SourceFacts:
    skeleton_schemas: list[str]  # managed schemas whose rows the data part holds
    managed_schemas: list[str]  # every managed schema present
    reserved_roles: list[str]
    extensions: list[tuple[str, str]]  # (extension, schema): what the skeleton's tables may need first


def _inspect_source(target: DatabaseTarget) -> _SourceFacts:
    with connect(target) as conn:
        schemas = [
            str(row[0])
            for row in conn.execute(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                "AND nspname <> 'information_schema' ORDER BY 1"
            ).fetchall()
        ]
        with_tables = {
            str(row[0])
            for row in conn.execute(
                "SELECT DISTINCT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
            ).fetchall()
        }
        roles = [str(row[0]) for row in conn.execute("SELECT rolname FROM pg_catalog.pg_roles ORDER BY 1").fetchall()]
        extensions = [
            (str(row[0]), str(row[1]))
            for row in conn.execute(
                "SELECT e.extname, n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
                "ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1"
            ).fetchall()
        ]
    managed = [s for s in schemas if is_managed_schema(s)]
    skeleton = [s for s in managed if s in with_tables and not _matches(s, DATA_DUMP_EXCLUDED)]
    return _SourceFacts(skeleton, managed, [r for r in roles if RESERVED_ROLE.fullmatch(r)], extensions)


class _Child:
    """One dump tool: stdout is read by the caller, stderr is drained (and kept, capped) in a thread."""

    def __init__(self, part: str, args: list[str], env: dict[str, str]) -> None:
        self.part = part
        self.args = args
        self.tail: deque[bytes] = deque()
        self._size = 0
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0
        )
        self._drain = threading.Thread(target=self._read_stderr, name=f"{part}-stderr", daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail.append(line)
            self._size += len(line)
            while self._size > STDERR_KEEP and len(self.tail) > 1:
                self._size -= len(self.tail.popleft())

    def read(self, size: int) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read(size)

    def wait(self) -> int:
        code = self.proc.wait()
        self._drain.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def stderr(self) -> str:
        return b"".join(self.tail).decode("utf-8", errors="replace").strip()


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
        self._facts = _inspect_source(self.target)
        self._snapshot_conn, snapshot = _export_snapshot(self.target)
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
                *(f"--schema={_ident(s)}" for s in self._facts.skeleton_schemas),
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
        self._child: _Child | None = None
        self._children: list[_Child] = []
        self._failure: _Failure | None = None
        self._done = False
        self._chunks: Generator[bytes, None, None] = self._generate()
        self._reader = _PartsReader(self._chunks)

    def _collect_additions(self) -> list[Addition]:
        """Read in the dump's snapshot, so that the app's objects agree with the schema and the data."""
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

    def _start(self, part: str) -> _Child:
        child = _Child(part, self.commands[part], self._env)
        self._child = child
        self._children.append(child)
        return child

    def _finish(self, child: _Child, trailer_seen: bool = True) -> bool:
        code = child.wait()
        self._child = None
        if code != 0:
            self._failure = _Failure(child.part, code)
        elif not trailer_seen:
            self._failure = _Failure(child.part, 1, "its output ended without its closing line")
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
        texts = [f"[{child.part}] {child.stderr()}" for child in self._children if child.stderr()]
        return "\n".join(texts)

    def failure(self, code: int) -> DumpFailed:
        failed = self._failure or _Failure("data", code)
        child = next((c for c in reversed(self._children) if c.part == failed.part), None)
        text = child.stderr() if child else ""
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


def _export_snapshot(target: DatabaseTarget) -> tuple[psycopg.Connection[tuple[object, ...]] | None, str | None]:
    """One snapshot for the schema, the skeleton and the data, held open until the data part has started."""
    conn = connect(target)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        return conn, str(_one(conn, "SELECT pg_catalog.pg_export_snapshot()"))
    except psycopg.Error:
        # A server that cannot export snapshots still gets a backup, in three consecutive snapshots.
        conn.close()
        return None, None


# ---------------------------------------------------------------------------------------------------------------
# Restore


def read_header(path: Path, compression: str) -> dict[str, Any] | None:
    """The facts line at the top of a Supabase archive, or None (another archive, or unreadable here)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(HEADER_SCAN)
        if compression == "zstd":
            text = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        elif compression == "gzip":
            text = zlib.decompressobj(31).decompress(raw, HEADER_SCAN)
        else:
            text = raw
    except (OSError, zstandard.ZstdError, zlib.error):
        return None
    first = text.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if not first.startswith(HEADER_MARK):
        return None
    with contextlib.suppress(ValueError):
        facts = json.loads(first[len(HEADER_MARK) :])
        return facts if isinstance(facts, dict) else None
    return None


def is_supabase_archive(archive: ArchiveFile) -> bool:
    profile = (archive.entry or {}).get("profile")
    if profile is not None:
        return bool(profile == "supabase")
    return read_header(archive.path, archive.compression) is not None


def user_schemas_only(schemas: Sequence[SchemaState]) -> list[SchemaState]:
    return [schema for schema in schemas if not is_managed_schema(schema.name)]


@dataclass
class _Dependent:
    kind: str  # 'trigger', 'policy', or another pg_identify_object type
    identity: str
    on: str  # what it depends on, for the report
    table: str  # the managed table it belongs to (triggers and policies)
    statements: list[str]
    name: str = ""  # a trigger's or policy's own name


def _dependents(conn: psycopg.Connection[tuple[object, ...]], user: Sequence[str]) -> list[_Dependent]:
    """Objects in managed schemas that depend on user objects the restore drops: a trigger on auth.users calling
    public.handle_new_user(), a storage policy calling a public function. Dropping the user objects drops them
    with a CASCADE; the restore recreates triggers and policies afterwards, and refuses other kinds."""
    conn.execute("SET search_path = ''")  # every name below comes out schema-qualified
    # Triggers, policies, rules (views) and defaults have no schema of their own: their table's is theirs.
    owner_schema = (
        "coalesce(a.schema, (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.oid = "
        "CASE d.classid WHEN 'pg_catalog.pg_trigger'::regclass THEN "
        "(SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = d.objid) "
        "WHEN 'pg_catalog.pg_policy'::regclass THEN "
        "(SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = d.objid) "
        "WHEN 'pg_catalog.pg_rewrite'::regclass THEN "
        "(SELECT w.ev_class FROM pg_catalog.pg_rewrite w WHERE w.oid = d.objid) "
        "WHEN 'pg_catalog.pg_attrdef'::regclass THEN "
        "(SELECT f.adrelid FROM pg_catalog.pg_attrdef f WHERE f.oid = d.objid) END))"
    )
    rows = conn.execute(
        "SELECT DISTINCT d.classid::regclass::text, d.objid, a.type, s.schema, a.identity, r.identity "
        "FROM pg_catalog.pg_depend d "
        "CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) a "
        "CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) r "
        f"CROSS JOIN LATERAL (SELECT {owner_schema} AS schema) s "
        "WHERE d.deptype IN ('n', 'a') AND d.refclassid IN ('pg_catalog.pg_class'::regclass, "
        "'pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_type'::regclass) "
        "AND r.schema = ANY(%s) AND s.schema IS NOT NULL AND NOT (s.schema = ANY(%s)) "
        "AND s.schema NOT IN ('pg_catalog', 'information_schema') "
        "AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e WHERE e.classid = d.refclassid "
        "AND e.objid = d.refobjid AND e.deptype = 'e') ORDER BY 5",
        (list(user), list(user)),
    ).fetchall()
    found: dict[str, _Dependent] = {}
    for qualified, oid, kind, _schema, identity, on in rows:
        catalog = str(qualified).removeprefix("pg_catalog.")
        key = f"{catalog}:{oid}"
        if key in found:
            continue
        statements: list[str] = []
        table = name = ""
        if catalog == "pg_trigger":
            row = conn.execute(
                "SELECT pg_catalog.pg_get_triggerdef(t.oid), t.tgrelid::regclass::text, t.tgenabled, "
                "pg_catalog.quote_ident(t.tgname), t.tgname FROM pg_catalog.pg_trigger t WHERE t.oid = %s",
                (oid,),
            ).fetchone()
            assert row is not None
            table, name = str(row[1]), str(row[4])
            statements.append(f"{row[0]};")
            state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(str(row[2]))
            if state:
                statements.append(f"ALTER TABLE {table} {state} TRIGGER {row[3]};")
        elif catalog == "pg_policy":
            row = conn.execute(
                "SELECT pg_catalog.format('CREATE POLICY %%I ON %%s AS %%s FOR %%s TO %%s%%s%%s;', p.polname, "
                "p.polrelid::regclass, CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, "
                "CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' "
                "WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, "
                "CASE WHEN p.polroles = '{0}' THEN 'PUBLIC' ELSE (SELECT pg_catalog.string_agg("
                "pg_catalog.quote_ident(r.rolname), ', ') FROM pg_catalog.pg_roles r WHERE r.oid = ANY(p.polroles)) "
                "END, ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', "
                "' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')'), "
                "p.polrelid::regclass::text, p.polname FROM pg_catalog.pg_policy p WHERE p.oid = %s",
                (oid,),
            ).fetchone()
            assert row is not None
            statements.append(str(row[0]))
            table, name = str(row[1]), str(row[2])
        found[key] = _Dependent(str(kind), str(identity), str(on), table, statements, name)
    conn.execute("RESET search_path")
    return list(found.values())


def plan_restore(
    target: DatabaseTarget, schemas: Sequence[SchemaState], archive: ArchiveFile
) -> tuple[list[SchemaState], list[str]]:
    """The user schemas a Supabase restore replaces (managed ones stay), and what stops this role from it."""
    diagnose_url(target)
    user = user_schemas_only(schemas)
    tables = sorted((archive.entry or {}).get("tables") or {})
    managed = [name for name in tables if is_managed_schema(name.partition(".")[0])]
    header = read_header(archive.path, archive.compression) or {}
    custom_roles = list(header.get("custom_roles") or [])
    carries_additions = holds_additions(archive)
    problems: list[str] = []
    with connect(target) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolbypassrls, rolcreaterole FROM pg_catalog.pg_roles "
            "WHERE rolname = current_user"
        ).fetchone()
        assert row is not None
        me, superuser, bypass, createrole = str(row[0]), bool(row[1]), bool(row[2]), bool(row[3])
        missing_tables: list[str] = []
        no_rights: list[str] = []
        secured: list[str] = []
        for name in managed:
            schema, _, table = name.partition(".")
            found = conn.execute(
                "SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity, "
                "pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (schema, table),
            ).fetchone()
            if found is None:
                missing_tables.append(name)
                continue
            rights = conn.execute(
                "SELECT pg_catalog.has_table_privilege(%s::oid, 'INSERT') "
                "AND pg_catalog.has_table_privilege(%s::oid, 'TRUNCATE')",
                (found[0], found[0]),
            ).fetchone()
            if not (rights and rights[0]):
                no_rights.append(name)
            if found[1] and not (superuser or bypass) and (found[2] or not found[3]):
                secured.append(name)
        if missing_tables:
            problems.append(
                f"{target.dbname} is not a Supabase database: it has no {_listed(missing_tables)}, which the "
                "backup's data fills (restore a Supabase archive into a Supabase project)"
            )
        if no_rights:
            problems.append(f"role {me} may not replace the rows of {_listed(no_rights)} (needs INSERT and TRUNCATE)")
        if secured:
            problems.append(
                f"role {me} lacks BYPASSRLS, and row-level security would refuse the rows of {_listed(secured)}"
            )
        try:
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
        except psycopg.Error:
            problems.append(
                f"role {me} may not SET session_replication_role, which Supabase's restore needs for the data "
                "(Supabase allows it to postgres; elsewhere: GRANT SET ON PARAMETER session_replication_role)"
            )
        if custom_roles and not (createrole or superuser):
            exists = {
                str(r[0])
                for r in conn.execute(
                    "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", (custom_roles,)
                ).fetchall()
            }
            lacking = [r for r in custom_roles if r not in exists]
            if lacking:
                problems.append(
                    f"role {me} lacks CREATEROLE, and the backup's role(s) {_listed(lacking)} do not exist here "
                    "(create them first, or restore as a role with CREATEROLE)"
                )
        dependents = _dependents(conn, [s.name for s in user])
        # Those the preamble's drops take away need no replacing.
        going = {(d.kind, d.table, d.name) for d in dependents}
        problems += supabase_additions.problems(conn, additions_of(header), going)
        for dependent in dependents:
            if carries_additions and dependent.kind in ("trigger", "policy"):
                continue  # dropped with what it uses, and created again from the archive's managed-additions
            if dependent.kind not in ("trigger", "policy"):
                problems.append(
                    f"{dependent.kind} {dependent.identity} in a Supabase schema depends on {dependent.on}, which "
                    "the restore replaces; it would be dropped with it (drop or move it first)"
                )
                continue
            if dependent.kind == "trigger":
                allowed = conn.execute(
                    "SELECT pg_catalog.has_table_privilege(%s::regclass, 'TRIGGER')", (dependent.table,)
                ).fetchone()
            else:
                allowed = conn.execute(
                    "SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
                    "WHERE c.oid = %s::regclass",
                    (dependent.table,),
                ).fetchone()
            if not (allowed and allowed[0]):
                problems.append(
                    f"role {me} could not recreate {dependent.kind} {dependent.identity} (it uses {dependent.on}, "
                    "which the restore replaces)"
                )
    return user, problems


def restore_sql(
    target: DatabaseTarget, schemas: Sequence[SchemaState], tables: Iterable[str], archive: ArchiveFile | None = None
) -> str:
    """The preamble of a Supabase restore, inside its one transaction.

    It drops the user schemas and empties `public` (Supabase's grants and default privileges hang on it, so it
    stays), and empties the managed tables the data fills; managed schemas keep their structure. Triggers and
    policies on managed tables that those drops take with them come back from the archive's managed-additions
    part, as they were at the backup; an archive made before that part existed has them created again at
    COMMIT, as they are in the target now: a deferred trigger on a temporary table runs them.
    """
    names = [schema.name for schema in schemas]
    with connect(target) as conn:
        dependents = [] if archive is not None and holds_additions(archive) else _dependents(conn, names)
        dependents = [d for d in dependents if d.kind in ("trigger", "policy")]
    managed = sorted({name for name in tables if is_managed_schema(name.partition(".")[0])})
    statements = [
        "SET lock_timeout = '120s';",
        "SET client_min_messages = warning;",
        "SELECT pg_catalog.set_config('search_path', '', false);",
        # Tells the archive's scratch skeleton that this is a real restore.
        "SELECT pg_catalog.set_config('chrono.restore', 'on', false);",
    ]
    if dependents:
        statements.append(_at_commit([s for d in dependents for s in d.statements]))
    for name in names:
        if name != "public":
            statements.append(f"DROP SCHEMA {_ident(name)} CASCADE;")
    if "public" in names:
        statements.append(_empty_schema_sql("public"))
    else:
        statements.append('CREATE SCHEMA IF NOT EXISTS "public";')
    if managed:
        qualified = ", ".join(_ident(s) + "." + _ident(t) for s, _, t in (n.partition(".") for n in managed))
        statements.append(f"TRUNCATE TABLE {qualified};")
    statements.append("RESET lock_timeout;")
    return "\n".join(statements)


def _at_commit(statements: Sequence[str]) -> str:
    """SQL that runs `statements` when the transaction commits, after everything the archive does."""
    body = "BEGIN\n" + "".join(f"  EXECUTE {_literal(s)};\n" for s in statements) + "  RETURN NULL;\nEND"
    tag = _dollar(body)
    return (
        f"CREATE FUNCTION pg_temp.chrono_after_restore() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}\n{tag};\n"
        "CREATE TEMPORARY TABLE chrono_after_restore (run boolean) ON COMMIT DROP;\n"
        "CREATE CONSTRAINT TRIGGER chrono_after_restore AFTER INSERT ON pg_temp.chrono_after_restore "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.chrono_after_restore();\n"
        # The data section sets session_replication_role = replica, which would silence an ordinary trigger.
        "ALTER TABLE pg_temp.chrono_after_restore ENABLE ALWAYS TRIGGER chrono_after_restore;\n"
        "INSERT INTO pg_temp.chrono_after_restore VALUES (true);"
    )


def _empty_schema_sql(schema: str) -> str:
    """Drop every object of `schema` that an extension does not own, keeping the schema itself."""
    ns = _literal(schema)
    member = (
        "NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = '{catalog}'::regclass "
        "AND d.objid = {alias}.oid AND d.deptype = 'e')"
    )
    queries = [
        "SELECT pg_catalog.format('DROP %s IF EXISTS %I.%I CASCADE', CASE c.relkind WHEN 'v' THEN 'VIEW' "
        "WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, "
        f"n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {ns} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND "
        + member.format(catalog="pg_catalog.pg_class", alias="c")
        # A serial's or identity's sequence belongs to its column and goes with its table.
        + " AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass "
        "AND d.objid = c.oid AND c.relkind = 'S' AND d.deptype IN ('a', 'i'))",
        "SELECT pg_catalog.format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure) FROM pg_catalog.pg_proc p "
        f"WHERE p.pronamespace = pg_catalog.to_regnamespace({ns}) AND "
        + member.format(catalog="pg_catalog.pg_proc", alias="p"),
        "SELECT pg_catalog.format('DROP %s IF EXISTS %s CASCADE', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' "
        "END, t.oid::regtype) FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid "
        f"WHERE t.typnamespace = pg_catalog.to_regnamespace({ns}) AND t.typtype IN ('e', 'c', 'd', 'r') "
        "AND (t.typtype <> 'c' OR c.relkind = 'c') AND " + member.format(catalog="pg_catalog.pg_type", alias="t"),
        "SELECT pg_catalog.format('DROP COLLATION IF EXISTS %I.%I CASCADE', n.nspname, o.collname) "
        "FROM pg_catalog.pg_collation o JOIN pg_catalog.pg_namespace n ON n.oid = o.collnamespace "
        f"WHERE n.nspname = {ns} AND " + member.format(catalog="pg_catalog.pg_collation", alias="o"),
        "SELECT pg_catalog.format('DROP TEXT SEARCH CONFIGURATION IF EXISTS %I.%I CASCADE', n.nspname, o.cfgname) "
        "FROM pg_catalog.pg_ts_config o JOIN pg_catalog.pg_namespace n ON n.oid = o.cfgnamespace "
        f"WHERE n.nspname = {ns} AND " + member.format(catalog="pg_catalog.pg_ts_config", alias="o"),
        "SELECT pg_catalog.format('DROP TEXT SEARCH DICTIONARY IF EXISTS %I.%I CASCADE', n.nspname, o.dictname) "
        "FROM pg_catalog.pg_ts_dict o JOIN pg_catalog.pg_namespace n ON n.oid = o.dictnamespace "
        f"WHERE n.nspname = {ns} AND " + member.format(catalog="pg_catalog.pg_ts_dict", alias="o"),
        "SELECT pg_catalog.format('DROP OPERATOR IF EXISTS %s CASCADE', o.oid::regoperator) "
        f"FROM pg_catalog.pg_operator o WHERE o.oprnamespace = pg_catalog.to_regnamespace({ns}) AND "
        + member.format(catalog="pg_catalog.pg_operator", alias="o"),
    ]
    # Each list is taken whole before any drop: a CASCADE may remove later entries, hence IF EXISTS.
    body = "DECLARE\n  statement text;\n  batch text[];\nBEGIN\n"
    for query in queries:
        body += (
            f"  batch := ARRAY({query});\n"
            "  FOREACH statement IN ARRAY batch LOOP\n    EXECUTE statement;\n  END LOOP;\n"
        )
    body += "END"
    return _do(body)


def holds_additions(archive: ArchiveFile) -> bool:
    """Whether the archive carries the app's objects on managed tables (archives from format 2 on)."""
    if supabase_additions.PART in ((archive.entry or {}).get("parts") or []):
        return True
    header = read_header(archive.path, archive.compression) or {}
    return isinstance(header.get("format"), int) and int(header["format"]) >= 2


def additions_of(header: dict[str, Any]) -> list[Addition]:
    found = [Addition.from_facts(facts) for facts in header.get("managed_additions") or []]
    return [item for item in found if item is not None]


def additions_proof(archive: ArchiveFile) -> Proof | None:
    """The check, inside the restore's transaction, that every object the archive lists on managed tables exists."""
    items = additions_of(read_header(archive.path, archive.compression) or {})
    if not items:
        return None

    def check(lookup: Lookup) -> tuple[list[str], str]:
        absent = supabase_additions.missing(lookup, items)
        return absent, f"{len(items)} object(s) of yours on Supabase's tables are in place"

    return Proof("these objects of yours on Supabase's tables", check)


def summary_line() -> str:
    return (
        "Supabase Storage files are not in a database dump: the archive holds the storage.objects rows that "
        "describe them, not the files. Copy the buckets separately."
    )
