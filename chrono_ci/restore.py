"""A safe restore, in the guide's order: integrity test, plan, confirmation, safety backup, then one
all-or-nothing transaction, then a row-count comparison.

The transaction first drops the target's user schemas and then replays the dump, so afterwards the target holds
exactly the backup (objects made after the backup are gone), or, on any error, exactly what it held before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chrono_ci import supabase
from chrono_ci.backup import BackupResult, run_backup, target_for
from chrono_ci.catalog import ArchiveFile
from chrono_ci.errors import Refused, RestoreFailed, VerificationFailed
from chrono_ci.postgres import DatabaseTarget, PgTools, ServerInfo, choose_pg_tools, connect, probe_server
from chrono_ci.report import Reporter
from chrono_ci.scratch import compare_counts, count_tables
from chrono_ci.settings import Settings
from chrono_ci.sqlrestore import run_sql_restore
from chrono_ci.verify import DecryptorFactory, IntegrityReport, check_archive

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass
class SchemaState:
    name: str
    owner: str
    tables: int


@dataclass
class RestorePlan:
    archive: ArchiveFile
    target: DatabaseTarget
    server: ServerInfo
    tools: PgTools
    schemas: list[SchemaState]
    problems: list[str] = field(default_factory=list)


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


def drop_schemas_sql(schemas: list[SchemaState], server_major: int) -> str:
    """The preamble that empties the target inside the restore's transaction."""
    # Large objects belong to the database, not to a schema: the backup's come back with their own OIDs.
    statements = [
        "SET lock_timeout = '120s';",
        "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;",
    ]
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
    statements.append("RESET lock_timeout;")
    return "\n".join(statements)


def integrity_first(archive: ArchiveFile, reporter: Reporter, decrypt: DecryptorFactory | None) -> IntegrityReport:
    report = check_archive(
        archive.path, archive.compression, archive.entry, encrypted=archive.encrypted, decrypt=decrypt
    )
    for check in report.checks:
        (reporter.ok if check.ok else reporter.info if check.ok is None else reporter.fail)(
            f"{check.name}: {check.detail}"
        )
    if not report.ok:
        raise VerificationFailed(
            f"{archive.path.name} failed its integrity test ({', '.join(c.name for c in report.failed())}): "
            "refusing to restore it. Nothing was touched.",
            hint="Choose another archive from `chrono-ci recovery list`.",
        )
    return report


def plan_restore(settings: Settings, archive: ArchiveFile, target: DatabaseTarget | None) -> RestorePlan:
    target = target or target_for(settings, archive.kind)
    server = probe_server(target)
    tools = choose_pg_tools(server, settings.pg_bin_dir)
    schemas = user_schemas(target)
    extra: list[str] = []
    if supabase.is_supabase_archive(archive):  # Supabase's managed schemas stay; only user schemas are replaced
        schemas, extra = supabase.plan_restore(target, schemas, archive)
    plan = RestorePlan(archive, target, server, tools, schemas)
    plan.problems = restore_rights_problems(target, schemas) + extra
    return plan


def print_plan(plan: RestorePlan, reporter: Reporter) -> None:
    entry = plan.archive.entry or {}
    source = entry.get("source") or "unknown (no metadata entry)"
    reporter.info(f"backup: {plan.archive.path.name}, made {plan.archive.created_at} from {source}")
    reporter.info(
        f"target: {plan.target.display()} (PostgreSQL {plan.server.version}); psql {plan.tools.version} "
        f"from {plan.tools.bin_dir}"
    )
    if plan.schemas:
        listed = ", ".join(f"{s.name} ({s.tables} tables)" for s in plan.schemas)
        reporter.info(f"will be replaced: every user schema of {plan.target.dbname}: {listed}")
    else:
        reporter.info(f"will be replaced: nothing ({plan.target.dbname} has no user schema)")
    kind = plan.archive.kind
    reporter.info(f"safety backup first: {kind}_safety_backup_<now> in the backup folder")


def confirm(plan: RestorePlan, yes: bool, ask: Callable[[str], str] | None) -> None:
    if yes:
        return
    if ask is None:
        raise Refused(
            "Refusing to restore without confirmation: standard input is not a terminal.",
            hint="A restore replaces the target database. Add --yes to confirm in a script or CI job.",
        )
    answer = ask(f"This replaces database {plan.target.dbname!r}. Type its name to confirm: ")
    if answer.strip() != plan.target.dbname:
        raise Refused("Confirmation did not match the database name: nothing was touched.", hint="Run again.")


def terminal_prompt() -> Callable[[str], str] | None:
    if not sys.stdin.isatty():
        return None
    return input


def run_restore(
    settings: Settings,
    archive: ArchiveFile,
    reporter: Reporter,
    *,
    dry_run: bool,
    yes: bool,
    target: DatabaseTarget | None = None,
    ask: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    reporter.step(f"1. integrity test of {archive.path.name}")
    # A missing or wrong key stops here, before the target is even looked at.
    decrypt = settings.encryption.decrypt_for(archive.encrypted)
    integrity = integrity_first(archive, reporter, decrypt)
    assert integrity.contents is not None
    tables = dict((archive.entry or {}).get("tables") or integrity.contents.tables)

    reporter.step("2. plan")
    plan = plan_restore(settings, archive, target)
    reporter.add_secrets(plan.target.secrets())
    print_plan(plan, reporter)
    if plan.problems:
        for problem in plan.problems:
            reporter.fail(problem)
        raise RestoreFailed(
            f"The role cannot restore into {plan.target.display()}: " + "; ".join(plan.problems) + ".",
            hint="Use the database owner or a superuser for the restore. Nothing was touched.",
        )
    reporter.ok("target reachable, and the role may replace its schemas")
    result: dict[str, Any] = {"file": archive.path.name, "target": plan.target.display(), "dry_run": dry_run}
    if dry_run:
        reporter.line("Dry run: the archive is valid and the restore would proceed. Nothing was changed.")
        return {**result, "ok": True}

    reporter.step("3. confirmation")
    confirm(plan, yes, ask)
    reporter.ok("confirmed" + (" (--yes)" if yes else ""))

    reporter.step("4. safety backup of the target")
    safety: BackupResult = run_backup(settings, archive.kind, reporter, series="safety", target=plan.target)
    result["safety_backup"] = safety.entry["file"]

    reporter.step("5. restore, in one transaction")
    preamble = drop_schemas_sql(plan.schemas, plan.server.major)
    if supabase.is_supabase_archive(archive):
        preamble = supabase.restore_sql(plan.target, plan.schemas, tables, archive)
    try:
        run_sql_restore(
            archive.path,
            archive.compression,
            plan.target,
            plan.tools,
            plan.server.major,
            preamble=preamble,
            decrypt=decrypt,
        )
    except RestoreFailed as failure:
        failure.hint = f"{failure.hint} The safety backup {safety.entry['file']} holds the database as it was."
        raise
    reporter.ok(f"restored {archive.path.name} into {plan.target.display()} and committed")

    reporter.step("6. row counts")
    found = count_tables(plan.target, sorted(tables))
    mismatches = compare_counts(tables, found)
    result["tables"] = found
    if mismatches:
        shown = ", ".join(f"{n}: {e} in the backup, {f} now" for n, (e, f) in mismatches.items())
        raise VerificationFailed(
            f"The restore committed, but row counts differ from the backup's: {shown}.",
            hint=f"Something wrote to the database during the restore? The safety backup is {safety.entry['file']}.",
        )
    reporter.ok(f"{len(tables)} tables, {sum(tables.values())} rows: every count matches the backup")
    if supabase.is_supabase_archive(archive):
        listed, absent = supabase.missing_additions(plan.target, archive)
        if absent:
            raise VerificationFailed(
                "The restore committed, but these objects of yours on Supabase's tables are missing: "
                f"{', '.join(absent)}.",
                hint=f"Create them again (your migrations hold them). The safety backup is {safety.entry['file']}.",
            )
        if listed:
            reporter.ok(f"{listed} object(s) of yours on Supabase's tables are in place")
    return {**result, "ok": True}
