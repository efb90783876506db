"""The plan of a restore, made before anything is touched: the target, its server and the pg_dump of the safety
backup, the user schemas that will be replaced, what stops this role, the other sessions; then the plan
printed and confirmed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.config.settings import Settings
from chrono_ci.errors import Refused
from chrono_ci.report.console import Reporter
from chrono_ci.restore.replay import Proof
from chrono_ci.restore.schemas import SchemaState, restore_rights_problems, user_schemas
from chrono_ci.restore.session import ServerSession, other_sessions, sessions_text
from chrono_ci.source.target import DatabaseTarget, ServerInfo, probe_server
from chrono_ci.source.tools import PgTools, choose_pg_tools


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


class RestoreProfile(Protocol):
    """What a restore asks the archive's profile (chrono_ci/profiles), passed in by the caller."""

    def target(self, settings: Settings) -> DatabaseTarget: ...

    def plan_schemas(
        self, target: DatabaseTarget, schemas: Sequence[SchemaState], archive: ArchiveFile
    ) -> tuple[list[SchemaState], list[str]]: ...

    def preamble(
        self,
        target: DatabaseTarget,
        server: ServerInfo,
        schemas: Sequence[SchemaState],
        archive: ArchiveFile,
        tables: Sequence[str],
    ) -> tuple[list[str], Proof | None]: ...


def plan_restore(
    settings: Settings, archive: ArchiveFile, target: DatabaseTarget | None, profile: RestoreProfile
) -> RestorePlan:
    """`target`: --target-url, else the database of the archive's kind."""
    target = target or profile.target(settings)
    server = probe_server(target)
    tools = choose_pg_tools(server, settings.pg_bin_dir)
    schemas, extra = profile.plan_schemas(target, user_schemas(target), archive)
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
    source = archive.record.source if archive.record is not None else ""
    return (source.rpartition("/")[2] or None) if "/" in source else None


def print_plan(plan: RestorePlan, reporter: Reporter) -> None:
    record = plan.archive.record
    source = (record.source if record is not None else "") or "unknown (no metadata entry)"
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
