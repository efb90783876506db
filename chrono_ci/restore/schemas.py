"""The target's user schemas: what a restore replaces, whether this role may replace them, and the SQL that
empties the target inside the restore's transaction."""

from __future__ import annotations

from dataclasses import dataclass

from chrono_ci.source.target import DatabaseTarget, connect

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass
class SchemaState:
    name: str
    owner: str
    tables: int


def user_schemas(target: DatabaseTarget) -> list[SchemaState]:
    with connect(target) as conn:
        rows = conn.execute(
            "SELECT n.nspname, pg_get_userbyid(n.nspowner), "
            "(SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')) "
            "FROM pg_namespace n WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' "
            "ORDER BY n.nspname"
        ).fetchall()
    return [SchemaState(str(name), str(owner), int(str(tables))) for name, owner, tables in rows]


def restore_rights_problems(target: DatabaseTarget, schemas: list[SchemaState]) -> list[str]:
    """What stops this role from replacing the target's contents, before anything is touched."""
    with connect(target) as conn:
        row = conn.execute(
            "SELECT r.rolsuper, has_database_privilege(current_user, current_database(), 'CREATE'), current_user "
            "FROM pg_roles r WHERE r.rolname = current_user"
        ).fetchone()
        assert row is not None
        superuser, can_create, user = bool(row[0]), bool(row[1]), str(row[2])
        if superuser:
            return []
        problems = []
        if not can_create:
            problems.append(f"role {user} lacks CREATE on the database (needed to recreate its schemas)")
        foreign = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata "
            "WHERE NOT pg_has_role(current_user, lomowner, 'MEMBER')"
        ).fetchone()
        if foreign and int(str(foreign[0])):
            problems.append(f"role {user} does not own all {foreign[0]} large object(s) it would have to replace")
        for schema in schemas:
            member = conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (schema.owner,)).fetchone()
            if not (member and member[0]):
                problems.append(f"role {user} may not drop schema {schema.name} (owned by {schema.owner})")
    return problems


def drop_schemas_sql(schemas: list[SchemaState], server_major: int) -> list[str]:
    """The preamble that empties the target inside the restore's transaction."""
    # Large objects belong to the database, not to a schema: the backup's come back with their own OIDs.
    statements = ["SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;"]
    for schema in schemas:
        ident = '"' + schema.name.replace('"', '""') + '"'
        statements.append(f"DROP SCHEMA {ident} CASCADE;")
    # pg_dump does not create the public schema (it assumes one exists), so it is recreated as initdb makes it.
    if server_major >= 15:
        statements.append("CREATE SCHEMA public AUTHORIZATION pg_database_owner;")
        statements.append("GRANT USAGE ON SCHEMA public TO PUBLIC;")
    else:
        statements.append("CREATE SCHEMA public;")
        statements.append("GRANT ALL ON SCHEMA public TO PUBLIC;")
    statements.append("COMMENT ON SCHEMA public IS 'standard public schema';")
    return statements
