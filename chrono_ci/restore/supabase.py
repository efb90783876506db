"""A Supabase restore, which a project accepts from its non-superuser `postgres` role: the user schemas are
replaced, Supabase's managed schemas keep their structure and only the tables the data fills are emptied; the
plan names whatever stops this role before anything is touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.dump.sql_quoting import do_block, dollar_tag, quote_ident, quote_literal
from chrono_ci.dump.supabase_additions import PART as ADDITIONS_PART
from chrono_ci.dump.supabase_additions import Addition
from chrono_ci.dump.supabase_header import read_header
from chrono_ci.restore import supabase_additions
from chrono_ci.restore.replay import Lookup, Proof
from chrono_ci.restore.schemas import SchemaState
from chrono_ci.source.supabase_checks import diagnose_url, listed
from chrono_ci.source.supabase_platform import is_managed_schema
from chrono_ci.source.target import DatabaseTarget, connect


def is_supabase_archive(archive: ArchiveFile) -> bool:
    profile = archive.record.profile if archive.record is not None else None
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
    tables = sorted(archive.record.tables or {}) if archive.record is not None else []
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
                f"{target.dbname} is not a Supabase database: it has no {listed(missing_tables)}, which the "
                "backup's data fills (restore a Supabase archive into a Supabase project)"
            )
        if no_rights:
            problems.append(f"role {me} may not replace the rows of {listed(no_rights)} (needs INSERT and TRUNCATE)")
        if secured:
            problems.append(
                f"role {me} lacks BYPASSRLS, and row-level security would refuse the rows of {listed(secured)}"
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
                    f"role {me} lacks CREATEROLE, and the backup's role(s) {listed(lacking)} do not exist here "
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
            statements.append(f"DROP SCHEMA {quote_ident(name)} CASCADE;")
    if "public" in names:
        statements.append(_empty_schema_sql("public"))
    else:
        statements.append('CREATE SCHEMA IF NOT EXISTS "public";')
    if managed:
        qualified = ", ".join(quote_ident(s) + "." + quote_ident(t) for s, _, t in (n.partition(".") for n in managed))
        statements.append(f"TRUNCATE TABLE {qualified};")
    statements.append("RESET lock_timeout;")
    return "\n".join(statements)


def _at_commit(statements: Sequence[str]) -> str:
    """SQL that runs `statements` when the transaction commits, after everything the archive does."""
    body = "BEGIN\n" + "".join(f"  EXECUTE {quote_literal(s)};\n" for s in statements) + "  RETURN NULL;\nEND"
    tag = dollar_tag(body)
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
    ns = quote_literal(schema)
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
    return do_block(body)


def holds_additions(archive: ArchiveFile) -> bool:
    """Whether the archive carries the app's objects on managed tables (archives from format 2 on)."""
    if archive.record is not None and ADDITIONS_PART in archive.record.parts:
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
