"""What a profile is: the one place that knows how a kind of database is backed up and restored. The backup
(chrono_ci/jobs/backup.py) and the restore (chrono_ci/restore/) ask their profile and never the kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.config.settings import Settings
from chrono_ci.dump.pg_dump import DumpSource
from chrono_ci.errors import ConfigError
from chrono_ci.report.console import Reporter
from chrono_ci.restore.schemas import SchemaState
from chrono_ci.source.target import DatabaseTarget, ServerInfo
from chrono_ci.source.tools import PgTools

if TYPE_CHECKING:  # the restore machinery is loaded by a restore, not by a backup
    from chrono_ci.restore.replay import Proof


class Profile:
    kind: str  # the archive names' KIND: postgres | supabase
    url_setting: str  # the variable of its database
    optional: bool = False  # `backup all` skips it, without failing, when its database is not configured
    # Its dump may start while the server is still being probed (chrono_ci/jobs/dump_start.py): nothing it
    # reads must be checked first. The probe still decides; a dump it disagrees with is killed unread.
    starts_before_probe: bool = False

    def configured(self, settings: Settings) -> DatabaseTarget | None:
        """Its database in the settings, if any."""
        raise NotImplementedError

    def target(self, settings: Settings) -> DatabaseTarget:
        """Its database, or the error that says which variable to set."""
        target = self.configured(settings)
        if target is None:
            name = self.url_setting
            raise ConfigError(
                f"{name} is not set: there is no {self.kind} database to back up.",
                hint=f"Set {name}=postgresql://user:password@host:5432/database in the environment "
                "(or a CI secret), then run again.",
            )
        return target

    # --- backing up ------------------------------------------------------------------------------------------

    def check_url(self, target: DatabaseTarget) -> None:
        """Before connecting: what the URL alone shows is wrong."""

    def check_access(self, target: DatabaseTarget) -> None:
        """Connected, before the dump: what this role may not read."""

    def open_dump(self, tools: PgTools, target: DatabaseTarget) -> DumpSource:
        """The dump, started: a stream of the archive's SQL."""
        raise NotImplementedError

    def parts(self, dump: DumpSource) -> tuple[str, ...]:
        """What the archive holds, in order, for its record."""
        raise NotImplementedError

    def after_backup(self, reporter: Reporter) -> None:
        """What a person must know once the backup is made."""

    # --- restoring -------------------------------------------------------------------------------------------

    def plan_schemas(
        self, target: DatabaseTarget, schemas: Sequence[SchemaState], archive: ArchiveFile
    ) -> tuple[list[SchemaState], list[str]]:
        """The schemas a restore replaces, and what stops this role from it."""
        raise NotImplementedError

    def preamble(
        self,
        target: DatabaseTarget,
        server: ServerInfo,
        schemas: Sequence[SchemaState],
        archive: ArchiveFile,
        tables: Sequence[str],
    ) -> tuple[list[str], Proof | None]:
        """The statements that empty the target inside the restore's transaction (`tables`: those the archive
        fills), and the profile's own proof before COMMIT."""
        raise NotImplementedError
