"""The Supabase profile: the project's roles, its schema without the managed schemas, the app's objects on
managed tables and the data, from SUPABASE_DB_URL (chrono_ci/dump/supabase_*); a restore replaces the user
schemas and the managed tables' rows, and leaves what Supabase manages (chrono_ci/restore/supabase*.py)."""

from __future__ import annotations

from collections.abc import Sequence

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.config.settings import Settings
from chrono_ci.dump.pg_dump import DumpSource
from chrono_ci.dump.supabase_dump import SupabaseDump, summary_line
from chrono_ci.pipeline.sqlscan import split_statements
from chrono_ci.profiles.base import Profile
from chrono_ci.report.console import Reporter
from chrono_ci.restore.replay import Proof
from chrono_ci.restore.schemas import SchemaState
from chrono_ci.source import supabase_checks
from chrono_ci.source.target import DatabaseTarget, ServerInfo
from chrono_ci.source.tools import PgTools


class SupabaseProfile(Profile):
    kind = "supabase"
    url_setting = "SUPABASE_DB_URL"
    optional = True  # a project without Supabase runs `backup all` as well

    def configured(self, settings: Settings) -> DatabaseTarget | None:
        return settings.supabase

    def check_url(self, target: DatabaseTarget) -> None:
        supabase_checks.diagnose_url(target)

    def check_access(self, target: DatabaseTarget) -> None:
        supabase_checks.check_read_privileges(target)

    def open_dump(self, tools: PgTools, target: DatabaseTarget) -> DumpSource:
        return SupabaseDump(tools, target)

    def parts(self, dump: DumpSource) -> tuple[str, ...]:
        assert isinstance(dump, SupabaseDump)
        return tuple(dump.parts)

    def after_backup(self, reporter: Reporter) -> None:
        reporter.info(summary_line())

    def holds(self, archive: ArchiveFile) -> bool:
        # The restore plan needs psycopg, which the command does not load to start.
        from chrono_ci.restore import supabase as restore_supabase

        return restore_supabase.is_supabase_archive(archive)

    def plan_schemas(
        self, target: DatabaseTarget, schemas: Sequence[SchemaState], archive: ArchiveFile
    ) -> tuple[list[SchemaState], list[str]]:
        from chrono_ci.restore import supabase as restore_supabase

        # Supabase's managed schemas stay; only user schemas are replaced.
        return restore_supabase.plan_restore(target, schemas, archive)

    def preamble(
        self,
        target: DatabaseTarget,
        server: ServerInfo,
        schemas: Sequence[SchemaState],
        archive: ArchiveFile,
        tables: Sequence[str],
    ) -> tuple[list[str], Proof | None]:
        from chrono_ci.restore import supabase as restore_supabase

        statements = split_statements(restore_supabase.restore_sql(target, schemas, tables, archive))
        return statements, restore_supabase.additions_proof(archive)
