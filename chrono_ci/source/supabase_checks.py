"""Checks before a Supabase backup or restore: a URL pg_dump cannot work through (the transaction pooler, a
PgBouncer in transaction mode, the IPv6-only direct host on a machine without IPv6), and a role that cannot
read every row a dump reads. Each stops the run before anything is dumped, with what to use instead.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chrono_ci.errors import ChronoError, ConfigError, ConnectionFailed, DumpFailed
from chrono_ci.source.supabase_platform import DATA_DUMP_EXCLUDED, data_is_dumped, matches_any
from chrono_ci.source.target import DatabaseTarget, connect

if TYPE_CHECKING:
    import psycopg

TRANSACTION_POOLER_PORT = 6543
DIRECT_HOST = re.compile(r"db\.([a-z0-9]+)\.supabase\.(?:co|com|net|in|red)", re.IGNORECASE)
POOLER_HOST = re.compile(r"(?:aws-\d+-)?([a-z0-9-]+)\.pooler\.supabase\.com", re.IGNORECASE)
POOLER_USER = re.compile(r"postgres\.([a-z0-9]+)", re.IGNORECASE)


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


def one_value(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> object:
    row = conn.execute(sql).fetchone()
    return row[0] if row else None


def _transaction_pooling(target: DatabaseTarget, first: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when two statements of one client session ran on different server connections.

    A direct or session-pooled connection keeps its backend and its settings for its whole life; a transaction
    pooler may give a second client the backend the first one holds between transactions.
    """
    pid = one_value(first, "SELECT pg_catalog.pg_backend_pid()")
    first.execute("SELECT pg_catalog.set_config('chrono.session_probe', 'kept', false)")
    seen: list[object] = []

    import psycopg

    def second_client() -> None:
        with (
            contextlib.suppress(ChronoError, psycopg.Error),
            connect(target, timeout=5) as second,
            second.transaction(),
        ):
            seen.append(one_value(second, "SELECT pg_catalog.pg_backend_pid()"))

    thread = threading.Thread(target=second_client, name="pooler-probe", daemon=True)
    thread.start()
    thread.join(10)  # a full session pool makes the second client wait: that is not what we look for
    row = first.execute(
        "SELECT pg_catalog.current_setting('chrono.session_probe', true), pg_catalog.pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return (bool(seen) and seen[0] == pid) or row[0] != "kept" or row[1] != pid


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
        if matches_any(schema, DATA_DUMP_EXCLUDED):
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
            f"row-level security is enabled on {listed(rls)}, and {user} has neither BYPASSRLS nor "
            "superuser (pg_dump would stop with 'query would be affected by row-level security policy')"
        )
    if unreadable:
        parts.append(f"{user} lacks SELECT on {listed(unreadable)}")
    if schemas:
        parts.append(f"{user} lacks USAGE on schema(s) {listed(sorted(schemas))}")
    raise DumpFailed(
        f"The role {user} cannot read everything a Supabase backup holds, so nothing was dumped: "
        + "; ".join(parts)
        + ".",
        hint="Back up as the postgres role (it has BYPASSRLS), or with the backup role Supabase recommends: "
        "CREATE ROLE backup_reader LOGIN PASSWORD '...' BYPASSRLS; GRANT pg_read_all_data TO backup_reader; "
        "ALTER ROLE backup_reader SET default_transaction_read_only = on;",
    )


def listed(names: Sequence[str], shown: int = 8) -> str:
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
