"""A safe restore, in the guide's order: integrity test, plan, confirmation, safety backup, then one
all-or-nothing transaction that commits only once every table's row count matches the backup's record.

The transaction first drops the target's user schemas and then replays the dump, so afterwards the target holds
exactly the backup (objects made after the backup are gone), or, on any error, exactly what it held before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chrono_ci.archive.catalog import ArchiveFile
from chrono_ci.config.settings import Settings
from chrono_ci.errors import Refused, RestoreFailed, VerificationFailed
from chrono_ci.jobs.backup import BackupResult, run_backup, target_for
from chrono_ci.pipeline.sqlscan import split_statements
from chrono_ci.report.console import Reporter
from chrono_ci.restore import supabase
from chrono_ci.restore.replay import (
    ArchiveRefused,
    Expected,
    ServerSession,
    SessionRules,
    other_sessions,
    replay_archive,
    sessions_text,
)
from chrono_ci.restore.schemas import SchemaState, drop_schemas_sql, restore_rights_problems, user_schemas
from chrono_ci.source.target import DatabaseTarget, ServerInfo, probe_server
from chrono_ci.source.tools import PgTools, choose_pg_tools
from chrono_ci.verify.integrity import DecryptorFactory, IntegrityReport, check_archive


@dataclass
class RestorePlan:
    archive: ArchiveFile
    target: DatabaseTarget
    server: ServerInfo
    tools: PgTools  # the pg_dump of the safety backup
    schemas: list[SchemaState]
    problems: list[str] = field(default_factory=list)
    source_database: str | None = None  # the database the backup was made from, when its record says
    sessions: list[list[str | None]] = field(default_factory=list)  # other sessions connected to the target

    @property
    def other_database(self) -> bool:
        return self.source_database is not None and self.source_database != self.target.dbname


def integrity_first(archive: ArchiveFile, reporter: Reporter, decrypt: DecryptorFactory | None) -> IntegrityReport:
    report = check_archive(
        archive.path,
        archive.compression,
        archive.entry,
        encrypted=archive.encrypted,
        decrypt=decrypt,
        profile=archive.kind,
    )
    for check in report.checks:
        (reporter.ok if check.ok else reporter.info if check.ok is None else reporter.fail)(
            f"{check.name}: {check.detail}"
        )
    refused = next((c for c in report.failed() if c.name == "contents"), None)
    if refused is not None:
        raise ArchiveRefused(
            f"{archive.path.name} was refused before anything was touched: {refused.detail.removeprefix('refused: ')}.",
            hint="pg_dump never writes this: the archive was altered or planted. Do not restore it; choose another "
            "archive from `chrono-ci recovery list`, and see SECURITY.md.",
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
    plan = RestorePlan(archive, target, server, tools, schemas, source_database=_source_database(archive))
    plan.problems = restore_rights_problems(target, schemas) + extra
    session = ServerSession(target, application="chrono-ci restore (plan)")
    try:
        plan.sessions = other_sessions(session)
    finally:
        session.close()
    return plan


def _source_database(archive: ArchiveFile) -> str | None:
    """The database named by the record's source (host:port/database), if there is a record."""
    source = (archive.entry or {}).get("source")
    if not isinstance(source, str) or "/" not in source:
        return None
    return source.rpartition("/")[2] or None


def print_plan(plan: RestorePlan, reporter: Reporter) -> None:
    entry = plan.archive.entry or {}
    source = entry.get("source") or "unknown (no metadata entry)"
    reporter.info(f"backup: {plan.archive.path.name}, made {plan.archive.created_at} from {source}")
    reporter.info(
        f"target: {plan.target.display()} (PostgreSQL {plan.server.version}); restored by chrono-ci over one "
        f"connection; pg_dump {plan.tools.version} for the safety backup"
    )
    if plan.other_database:
        reporter.warn(
            f"the backup was made from database {plan.source_database!r}; the target is {plan.target.dbname!r}"
        )
    if plan.sessions:
        reporter.warn(f"{len(plan.sessions)} other session(s) connected to the target: {sessions_text(plan.sessions)}")
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
    what = f"database {plan.target.dbname!r}"
    if plan.other_database:
        what += f" with a backup of another database, {plan.source_database!r}"
    if plan.sessions:
        what += f" ({len(plan.sessions)} other session(s) are connected to it)"
    answer = ask(f"This replaces {what}. Type {plan.target.dbname!r} to confirm: ")
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
    sessions: SessionRules | None = None,
) -> dict[str, Any]:
    reporter.step(f"1. integrity test of {archive.path.name}")
    # A missing or wrong key stops here, before the target is even looked at.
    decrypt = settings.encryption.decrypt_for(archive.encrypted)
    integrity = integrity_first(archive, reporter, decrypt)
    expected = Expected.of(archive.entry, integrity.contents)
    tables = expected.tables or {}

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
    result: dict[str, Any] = {
        "file": archive.path.name,
        "target": plan.target.display(),
        "dry_run": dry_run,
        "source_database": plan.source_database,
        "other_sessions": len(plan.sessions),
    }
    if dry_run:
        reporter.line("Dry run: the archive is valid and the restore would proceed. Nothing was changed.")
        return {**result, "ok": True}

    reporter.step("3. confirmation")
    confirm(plan, yes, ask)
    reporter.ok("confirmed" + (" (--yes)" if yes else ""))

    reporter.step("4. safety backup of the target")
    safety: BackupResult = run_backup(settings, archive.kind, reporter, series="safety", target=plan.target)
    result["safety_backup"] = safety.entry["file"]

    reporter.step("5. restore in one transaction, row counts proven before COMMIT")
    if supabase.is_supabase_archive(archive):
        preamble = split_statements(supabase.restore_sql(plan.target, plan.schemas, tables, archive))
        proof = supabase.additions_proof(archive)
    else:
        preamble = drop_schemas_sql(plan.schemas, plan.server.major)
        proof = None
    try:
        outcome = replay_archive(
            archive.path,
            archive.compression,
            plan.target,
            expected=expected,
            profile=archive.kind,
            preamble=preamble,
            decrypt=decrypt,
            sessions=sessions,
            proof=proof,
        )
    except (RestoreFailed, VerificationFailed) as failure:
        failure.hint = f"{failure.hint} The safety backup {safety.entry['file']} holds the database as it was."
        raise
    for note in outcome.skipped:
        reporter.info(f"skipped {note}")
    for warning in outcome.warnings:
        reporter.warn(f"server warning: {warning}")
    reporter.ok(
        f"{len(outcome.tables)} tables, {sum(outcome.tables.values())} rows: every count matches the backup "
        "(checked before COMMIT)"
    )
    reporter.ok(f"restored {archive.path.name} into {plan.target.display()} and committed")
    if outcome.proven:
        reporter.ok(outcome.proven)
    result["tables"] = outcome.tables
    result["warnings"] = outcome.warnings
    return {**result, "ok": True}
