"""What a Supabase dump reads from the source before it starts: the managed schemas present and which of them
the data part fills, the platform's reserved roles, the extensions; and the one snapshot the schema, skeleton
and data are all read in, so that they agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chrono_ci.source.supabase_checks import one_value
from chrono_ci.source.supabase_platform import DATA_DUMP_EXCLUDED, RESERVED_ROLE, is_managed_schema, matches_any
from chrono_ci.source.target import DatabaseTarget, connect

if TYPE_CHECKING:
    import psycopg


@dataclass
class SourceFacts:
    skeleton_schemas: list[str]  # managed schemas whose rows the data part holds
    managed_schemas: list[str]  # every managed schema present
    reserved_roles: list[str]
    extensions: list[tuple[str, str]]  # (extension, schema): what the skeleton's tables may need first


def inspect_source(target: DatabaseTarget) -> SourceFacts:
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
    skeleton = [s for s in managed if s in with_tables and not matches_any(s, DATA_DUMP_EXCLUDED)]
    return SourceFacts(skeleton, managed, [r for r in roles if RESERVED_ROLE.fullmatch(r)], extensions)


def export_snapshot(target: DatabaseTarget) -> tuple[psycopg.Connection[tuple[object, ...]] | None, str | None]:
    """One snapshot for the schema, the skeleton and the data, held open until the data part has started."""
    import psycopg

    conn = connect(target)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        return conn, str(one_value(conn, "SELECT pg_catalog.pg_export_snapshot()"))
    except psycopg.Error:
        # A server that cannot export snapshots still gets a backup, in three consecutive snapshots.
        conn.close()
        return None, None
