"""The PostgreSQL profile: pg_dump's plain SQL of the whole database at DATABASE_URL; a restore replaces every
user schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.config.settings import Settings
from chrono_ci.dump.pg_dump import DumpProcess, DumpSource
from chrono_ci.profiles.base import Profile
from chrono_ci.restore.schemas import SchemaState, drop_schemas_sql
from chrono_ci.source.target import DatabaseTarget, ServerInfo
from chrono_ci.source.tools import PgTools

if TYPE_CHECKING:  # the restore machinery is loaded by a restore, not by a backup
    from chrono_ci.restore.replay import Proof


class PostgresProfile(Profile):
    kind = "postgres"
    url_setting = "DATABASE_URL"
    optional = False
    starts_before_probe = True  # pg_dump reads what the role may read; nothing to check before it starts

    def configured(self, settings: Settings) -> DatabaseTarget | None:
        return settings.database

    def open_dump(self, tools: PgTools, target: DatabaseTarget) -> DumpSource:
        return DumpProcess(tools, target)

    def parts(self, dump: DumpSource) -> tuple[str, ...]:
        return ("schema", "data")

    def plan_schemas(
        self, target: DatabaseTarget, schemas: Sequence[SchemaState], archive: ArchiveFile
    ) -> tuple[list[SchemaState], list[str]]:
        return list(schemas), []

    def preamble(
        self,
        target: DatabaseTarget,
        server: ServerInfo,
        schemas: Sequence[SchemaState],
        archive: ArchiveFile,
        tables: Sequence[str],
    ) -> tuple[list[str], Proof | None]:
        return drop_schemas_sql(list(schemas), server.major), None
