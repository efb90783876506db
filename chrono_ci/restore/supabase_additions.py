"""The app's objects on Supabase's managed tables at restore time (the `managed-additions` part, see
chrono_ci.dump.supabase_additions): what stops the restoring role from creating each of them, checked in the
plan, and which of them the target lacks afterwards, checked inside the restore's transaction before COMMIT.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence

import psycopg

from chrono_ci.dump.supabase_additions import PLATFORM_OWNER, Addition, Conn


def _supautils_grants(conn: Conn, setting: str) -> set[str]:
    """The tables supautils lets the current role act on as if it owned them (Supabase's `postgres`)."""
    row = conn.execute("SELECT pg_catalog.current_setting(%s, true), current_user", (setting,)).fetchone()
    if not row or not row[0]:
        return set()
    try:
        granted = json.loads(str(row[0]))
    except ValueError:
        return set()
    tables = granted.get(str(row[1])) if isinstance(granted, dict) else None
    return {str(t) for t in tables} if isinstance(tables, list) else set()


def problems(conn: Conn, items: Sequence[Addition], going: Collection[tuple[str, str, str]] = ()) -> list[str]:
    """Why the restoring role could not create each of `items` in the target; empty when it can. `going`: the
    (kind, table, name) of triggers and policies the restore drops before it creates these."""
    found: list[str] = []
    policy_grants = _supautils_grants(conn, "supautils.policy_grants")
    drop_grants = _supautils_grants(conn, "supautils.drop_trigger_grants")
    for item in items:
        if (item.kind, item.on, item.name) in going:
            drop_grants = {*drop_grants, item.on}
        try:
            reason = _problem(conn, item, policy_grants, drop_grants)
        except psycopg.Error as error:  # no USAGE on the schema, for one
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
        if reason:
            found.append(f"{item.label()} (yours, on a Supabase table) cannot be recreated: {reason}")
    return found


def _owns(conn: Conn, table: str) -> bool:
    row = conn.execute(
        "SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
        "WHERE c.oid = pg_catalog.to_regclass(%s)",
        (table,),
    ).fetchone()
    return bool(row and row[0])


def _problem(conn: Conn, item: Addition, policy_grants: set[str], drop_grants: set[str]) -> str:
    if item.kind == "function":
        row = conn.execute(
            "SELECT pg_catalog.to_regnamespace(%s) IS NOT NULL, "
            "pg_catalog.has_schema_privilege(pg_catalog.to_regnamespace(%s), 'CREATE'), "
            "(SELECT pg_catalog.pg_get_userbyid(proowner) FROM pg_catalog.pg_proc "
            "WHERE oid = pg_catalog.to_regprocedure(%s)), "
            "(SELECT pg_catalog.pg_has_role(current_user, proowner, 'USAGE') FROM pg_catalog.pg_proc "
            "WHERE oid = pg_catalog.to_regprocedure(%s))",
            (item.on, item.on, item.name, item.name),
        ).fetchone()
        assert row is not None
        if not row[0]:
            return f"the target has no schema {item.on}"
        if row[2] is not None and PLATFORM_OWNER.fullmatch(str(row[2])):
            return f"the target has Supabase's own function of that name (owned by {row[2]})"
        if row[2] is not None and not row[3]:
            return f"the target's function of that name belongs to {row[2]}"
        if not row[1]:
            return f"the role lacks CREATE on schema {item.on}"
        return ""
    if item.on_kind == "SCHEMA":
        row = conn.execute(
            "SELECT pg_catalog.to_regnamespace(%s) IS NOT NULL AND pg_catalog.has_schema_privilege("
            "pg_catalog.to_regnamespace(%s), %s)",
            (item.on, item.on, f"{item.name} WITH GRANT OPTION"),
        ).fetchone()
        return "" if row and row[0] else f"the role may not grant {item.name} on schema {item.on}"
    exists = conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (item.on,)).fetchone()
    if not (exists and exists[0]):
        return f"the target has no table {item.on}"
    if item.kind == "grant":
        check = "has_sequence_privilege" if item.on_kind == "SEQUENCE" else "has_table_privilege"
        row = conn.execute(
            f"SELECT pg_catalog.{check}(%s::pg_catalog.regclass, %s)", (item.on, f"{item.name} WITH GRANT OPTION")
        ).fetchone()
        return "" if row and row[0] else f"the role may not grant {item.name} on {item.on}"
    if item.owner_only and not _owns(conn, item.on):
        return f"{item.owner_only} can be set only by the owner of {item.on}, and the role is not"
    if item.kind == "trigger":
        row = conn.execute(
            "SELECT pg_catalog.has_table_privilege(%s::pg_catalog.regclass, 'TRIGGER'), "
            "(SELECT pg_catalog.pg_get_userbyid(p.proowner) FROM pg_catalog.pg_trigger t "
            "JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = %s::pg_catalog.regclass "
            "AND t.tgname = %s)",
            (item.on, item.on, item.name),
        ).fetchone()
        assert row is not None
        if row[1] is not None and PLATFORM_OWNER.fullmatch(str(row[1])):
            return "the target has Supabase's own trigger of that name on that table"
        if not row[0]:
            return f"the role lacks the TRIGGER privilege on {item.on}"
        if row[1] is not None and not (_owns(conn, item.on) or item.on in drop_grants):
            return f"a trigger of that name is there already, and the role may not drop triggers on {item.on}"
        return ""
    if not (_owns(conn, item.on) or item.on in policy_grants):
        return f"only the owner of {item.on} may create policies on it, and the role is not"
    return ""


def missing(lookup: Callable[[str, Sequence[str]], list[list[str | None]]], items: Sequence[Addition]) -> list[str]:
    """The triggers, policies and functions of `items` that the target does not have, asked through `lookup` (the
    restore's own connection, inside its transaction: $1, $2 are the parameters)."""
    absent: list[str] = []
    for item in items:
        if item.kind == "function":
            rows = lookup("SELECT pg_catalog.to_regprocedure($1) IS NOT NULL", [item.name])
        elif item.kind == "trigger":
            rows = lookup(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass($1) "
                "AND tgname = $2)",
                [item.on, item.name],
            )
        elif item.kind == "policy":
            rows = lookup(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_policy WHERE polrelid = pg_catalog.to_regclass($1) "
                "AND polname = $2)",
                [item.on, item.name],
            )
        else:
            continue
        if not (rows and rows[0][0] == "t"):
            absent.append(item.label())
    return absent
