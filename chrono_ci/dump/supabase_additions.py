"""The app's own objects on Supabase's managed tables: the `managed-additions` part of a Supabase archive.

The schema part leaves Supabase's managed schemas out (as Supabase's CLI does), and with them what an app adds
there: a trigger on auth.users calling public.handle_new_user(), policies on storage.objects, grants to its own
roles. This part carries those, so that a restore into a new project brings them back, created as the restoring
role, while Supabase's own objects there are never duplicated or altered.

What counts as the app's (decided from the catalog, the same way at backup and at restore):
- a trigger on a managed table whose function is not owned by one of Supabase's admin roles (supabase_*), or is
  an extension's (Supabase's own triggers call functions its admin roles own);
- every policy on a managed table (Supabase's services add none there), except pg_cron's own;
- functions in managed schemas that those triggers and policies call, when not owned by a supabase_* role and not
  an extension's;
- grants on managed schemas, tables and sequences to the backup's custom roles (not Supabase's reserved roles),
  and the grants of the functions above;
- comments on the objects above.

Each object is written as a guarded statement: one that exists with the same definition is left alone, one that
is the app's is replaced, and one of Supabase's with the same name stops the restore (it is never altered).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import psycopg

# Supabase's service and admin roles own what the platform made in its schemas.
PLATFORM_OWNER = re.compile(r"supabase_.*")
PLATFORM_POLICY = re.compile(r"cron_job_.*")
PART = "managed-additions"

Conn: TypeAlias = "psycopg.Connection[tuple[Any, ...]]"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _dollar(body: str, base: str) -> str:
    tag, n = f"${base}$", 0
    while tag in body:
        n += 1
        tag = f"${base}{n}$"
    return tag


def _do(body: str) -> str:
    tag = _dollar(body, "chrono")
    return f"DO {tag}\n{body}\n{tag};\n"


@dataclass
class Addition:
    """One object of the app's on a managed table, as the archive's header lists it (for the restore's plan)."""

    kind: str  # function, trigger, policy, grant
    name: str  # trigger or policy name, function signature, or the privilege of a grant
    on: str  # the table (trigger, policy, grant on a table or sequence), the schema (function, schema grant)
    to: str = ""  # a grant's grantee
    on_kind: str = ""  # a grant's object kind: TABLE, SEQUENCE, SCHEMA
    # A trigger's non-default state, or a comment on a trigger or policy: both need the table's owner.
    owner_only: str = ""
    sql: str = field(default="", repr=False)

    def facts(self) -> dict[str, str]:
        found = {"kind": self.kind, "name": self.name, "on": self.on}
        if self.kind == "grant":
            found.update(to=self.to, on_kind=self.on_kind)
        if self.owner_only:
            found.update(owner_only=self.owner_only)
        return found

    def label(self) -> str:
        if self.kind == "grant":
            return f"grant of {self.name} on {self.on_kind.lower()} {self.on} to {self.to}"
        if self.kind == "function":
            return f"function {self.name}"
        return f"{self.kind} {self.name} on {self.on}"

    @classmethod
    def from_facts(cls, facts: object) -> Addition | None:
        if not isinstance(facts, dict):
            return None
        values = {key: facts.get(key) for key in ("kind", "name", "on", "to", "on_kind", "owner_only")}
        if not all(isinstance(v, str) for k, v in values.items() if k in ("kind", "name", "on")):
            return None
        if values["kind"] not in ("function", "trigger", "policy", "grant"):
            return None
        return cls(**{k: str(v or "") for k, v in values.items()})


# ---------------------------------------------------------------------------------------------------------------
# Backup: what the source holds


_POLICY_SQL = (
    "pg_catalog.format('CREATE POLICY %%I ON %%s AS %%s FOR %%s TO %%s%%s%%s;', p.polname, "
    "p.polrelid::regclass, CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, "
    "CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' "
    "WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, "
    "CASE WHEN p.polroles = '{0}' THEN 'PUBLIC' ELSE (SELECT pg_catalog.string_agg("
    "pg_catalog.quote_ident(r.rolname), ', ' ORDER BY r.rolname) FROM pg_catalog.pg_roles r "
    "WHERE r.oid = ANY(p.polroles)) END, ' USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')', "
    "' WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')')"
)
_MEMBER = (
    "EXISTS (SELECT FROM pg_catalog.pg_depend e WHERE e.classid = '{catalog}'::pg_catalog.regclass "
    "AND e.objid = {oid} AND e.deptype = 'e')"
)
_ENABLED = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}


def collect(conn: Conn, managed: Sequence[str], reserved_role: re.Pattern[str]) -> list[Addition]:
    """The app's objects on the managed tables of `managed` schemas, in the order they must be created."""
    # Every name below comes out schema-qualified; the caller's transaction ends the setting.
    conn.execute("SELECT pg_catalog.set_config('search_path', '', true)")
    schemas = list(managed)
    triggers = conn.execute(
        "SELECT t.oid, t.tgname, t.tgrelid::pg_catalog.regclass::text, pg_catalog.pg_get_triggerdef(t.oid), "
        "t.tgenabled, t.tgfoid, pg_catalog.pg_get_userbyid(p.proowner), "
        + _MEMBER.format(catalog="pg_catalog.pg_proc", oid="p.oid")
        + ", pg_catalog.obj_description(t.oid, 'pg_trigger') "
        "FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid "
        "WHERE NOT t.tgisinternal AND n.nspname = ANY(%s) AND NOT "
        + _MEMBER.format(catalog="pg_catalog.pg_class", oid="c.oid")
        + " ORDER BY 3, 2",
        (schemas,),
    ).fetchall()
    policies = conn.execute(
        f"SELECT p.oid, p.polname, p.polrelid::pg_catalog.regclass::text, {_POLICY_SQL}, "
        "pg_catalog.obj_description(p.oid, 'pg_policy') FROM pg_catalog.pg_policy p "
        "JOIN pg_catalog.pg_class c ON c.oid = p.polrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND NOT "
        + _MEMBER.format(catalog="pg_catalog.pg_class", oid="c.oid")
        + " ORDER BY 3, 2",
        (schemas,),
    ).fetchall()
    trigger_items: list[Addition] = []
    called: set[int] = set()
    for _oid, name, table, definition, enabled, function, owner, member, comment in triggers:
        if PLATFORM_OWNER.fullmatch(str(owner)) and not member:
            continue  # Supabase's own
        statements = [f"{definition};"]
        needs_owner = []
        if str(enabled) in _ENABLED:
            statements.append(f"ALTER TABLE {table} {_ENABLED[str(enabled)]} TRIGGER {_ident(str(name))};")
            needs_owner.append(f"its state ({_ENABLED[str(enabled)]})")
        if comment is not None:
            statements.append(f"COMMENT ON TRIGGER {_ident(str(name))} ON {table} IS {_literal(str(comment))};")
            needs_owner.append("its comment")
        sql = _trigger_sql(str(name), table, statements)
        trigger_items.append(Addition("trigger", str(name), str(table), owner_only=" and ".join(needs_owner), sql=sql))
        called.add(int(function))
    policy_items: list[Addition] = []
    for oid, name, table, definition, comment in policies:
        if PLATFORM_POLICY.fullmatch(str(name)):
            continue
        statements = [str(definition)]
        if comment is not None:
            statements.append(f"COMMENT ON POLICY {_ident(str(name))} ON {table} IS {_literal(str(comment))};")
        sql = _policy_sql(str(name), str(table), str(definition), statements)
        owner_only = "its comment" if comment is not None else ""
        policy_items.append(Addition("policy", str(name), str(table), owner_only=owner_only, sql=sql))
        for row in conn.execute(
            "SELECT refobjid FROM pg_catalog.pg_depend WHERE classid = 'pg_catalog.pg_policy'::pg_catalog.regclass "
            "AND objid = %s AND refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass",
            (oid,),
        ).fetchall():
            called.add(int(row[0]))
    function_items = _functions(conn, schemas, sorted(called))
    grant_items = _grants(conn, schemas, reserved_role)
    return [*function_items, *trigger_items, *policy_items, *grant_items]


def _functions(conn: Conn, schemas: list[str], oids: list[int]) -> list[Addition]:
    rows = conn.execute(
        "SELECT p.oid::pg_catalog.regprocedure::text, n.nspname, pg_catalog.pg_get_functiondef(p.oid), "
        "pg_catalog.obj_description(p.oid, 'pg_proc'), pg_catalog.pg_get_userbyid(p.proowner), "
        "(SELECT pg_catalog.array_agg(pg_catalog.format('GRANT %%s ON FUNCTION %%s TO %%s%%s;', a.privilege_type, "
        "p.oid::pg_catalog.regprocedure, CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, "
        "CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)) "
        "FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a "
        "WHERE a.grantee <> p.proowner) "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.oid = ANY(%s) AND n.nspname = ANY(%s) AND NOT "
        + _MEMBER.format(catalog="pg_catalog.pg_proc", oid="p.oid")
        + " ORDER BY 1",
        (oids, schemas),
    ).fetchall()
    items = []
    for signature, schema, definition, comment, owner, grants in rows:
        if PLATFORM_OWNER.fullmatch(str(owner)):
            continue
        statements = [str(definition).rstrip() + ";", *(str(g) for g in grants or [])]
        if comment is not None:
            statements.append(f"COMMENT ON FUNCTION {signature} IS {_literal(str(comment))};")
        items.append(Addition("function", str(signature), str(schema), sql=_function_sql(str(signature), statements)))
    return items


def _grants(conn: Conn, schemas: list[str], reserved_role: re.Pattern[str]) -> list[Addition]:
    rows = conn.execute(
        "SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname), pg_catalog.pg_get_userbyid(a.grantee), "
        "a.privilege_type, a.is_grantable FROM pg_catalog.pg_namespace n "
        "CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a WHERE n.nspname = ANY(%s) AND a.grantee <> 0 "
        "UNION ALL SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, "
        "c.oid::pg_catalog.regclass::text, pg_catalog.pg_get_userbyid(a.grantee), a.privilege_type, a.is_grantable "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a WHERE n.nspname = ANY(%s) "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND a.grantee <> 0 AND NOT "
        + _MEMBER.format(catalog="pg_catalog.pg_class", oid="c.oid")
        + " ORDER BY 1, 2, 3, 4",
        (schemas, schemas),
    ).fetchall()
    me = str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
    items = []
    for on_kind, on, grantee, privilege, grantable in rows:
        # Supabase's own grants (the target has them), and the backing-up role's: the target's role has its own.
        if reserved_role.fullmatch(str(grantee)) or str(grantee) == me:
            continue
        option = " WITH GRANT OPTION" if grantable else ""
        statement = f"GRANT {privilege} ON {on_kind} {on} TO {_ident(str(grantee))}{option};"
        items.append(Addition("grant", str(privilege), str(on), to=str(grantee), on_kind=str(on_kind), sql=statement))
    return items


# ---------------------------------------------------------------------------------------------------------------
# The guarded statements


def _executes(statements: Iterable[str], indent: str = "    ") -> str:
    return "".join(f"{indent}EXECUTE {_literal(s)};\n" for s in statements)


def _trigger_sql(name: str, table: str, statements: list[str]) -> str:
    create = statements[0]
    return _do(
        "DECLARE\n  found record;\nBEGIN\n"
        "  SELECT pg_catalog.pg_get_triggerdef(t.oid) || ';' AS definition, pg_catalog.pg_get_userbyid(p.proowner) "
        "AS owner\n    INTO found FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid\n"
        f"    WHERE t.tgrelid = {_literal(table)}::pg_catalog.regclass AND t.tgname = {_literal(name)};\n"
        f"  IF found.definition = {_literal(create)} THEN\n    RETURN;  -- already there, as in the backup\n"
        "  ELSIF found.owner ~ '^supabase_' THEN\n"
        f"    RAISE EXCEPTION 'chrono-ci: the target already has Supabase''s own trigger % on %, unlike the "
        f"backup''s: it is not replaced', {_literal(name)}, {_literal(table)};\n"
        "  ELSIF found.definition IS NOT NULL THEN\n"
        f"    EXECUTE {_literal(f'DROP TRIGGER {_ident(name)} ON {table}')};\n"
        "  END IF;\n" + _executes(statements, "  ") + "END"
    )


def _policy_sql(name: str, table: str, create: str, statements: list[str]) -> str:
    current = _POLICY_SQL.replace("%%", "%")
    return _do(
        "DECLARE\n  found text;\nBEGIN\n"
        f"  SELECT {current} INTO found FROM pg_catalog.pg_policy p\n"
        f"    WHERE p.polrelid = {_literal(table)}::pg_catalog.regclass AND p.polname = {_literal(name)};\n"
        f"  IF found = {_literal(create)} THEN\n    RETURN;  -- already there, as in the backup\n"
        "  ELSIF found IS NOT NULL THEN\n"
        f"    EXECUTE {_literal(f'DROP POLICY {_ident(name)} ON {table}')};\n"
        "  END IF;\n" + _executes(statements, "  ") + "END"
    )


def _function_sql(signature: str, statements: list[str]) -> str:
    """CREATE OR REPLACE, then its privileges exactly as in the backup: the target's defaults (PUBLIC may
    execute a new function; default privileges may add more) are revoked first."""
    create, rest = statements[0], statements[1:]
    function = _literal(signature)
    return _do(
        "DECLARE\n  grantee text;\nBEGIN\n"
        f"  IF pg_catalog.to_regprocedure({function}) IS NOT NULL AND (SELECT "
        "pg_catalog.pg_get_userbyid(proowner) FROM pg_catalog.pg_proc "
        f"WHERE oid = pg_catalog.to_regprocedure({function})) ~ '^supabase_' THEN\n"
        f"    RAISE EXCEPTION 'chrono-ci: the target already has Supabase''s own function %: it is not replaced', "
        f"{function};\n"
        "  END IF;\n"
        + _executes([create], "  ")
        + "  FOR grantee IN SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END FROM pg_catalog.pg_proc p\n"
        "      CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a\n"
        f"      WHERE p.oid = pg_catalog.to_regprocedure({function}) AND a.grantee <> p.proowner LOOP\n"
        f"    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM %s', {function}, grantee);\n"
        "  END LOOP;\n" + _executes(rest, "  ") + "END"
    )


def part_sql(items: Sequence[Addition]) -> str:
    if not items:
        return "-- (none)\n"
    # The functions' bodies name objects schema-qualified or set their own search_path, as pg_dump writes them.
    out = ["SELECT pg_catalog.set_config('search_path', '', false);"]
    out += [item.sql for item in items]
    return "\n".join(out) + "\n"
