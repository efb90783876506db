"""`chrono-ci prune`: apply retention now to every database's archives, in the folder or under S3_URL."""

from __future__ import annotations

from typing import Annotated

import typer

from chrono_ci.cli.command import State, cli_values, guarded, origin_of, s3_storage
from chrono_ci.cli.options import (
    BackupDir,
    From,
    JsonOutput,
    KeepDaily,
    KeepMonthly,
    KeepWeekly,
    MaxBackups,
    RetentionDays,
    S3Url,
)
from chrono_ci.config.settings import resolve_settings
from chrono_ci.report.console import Reporter
from chrono_ci.report.results import PruneDocument, rejections


def prune(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the decision; delete nothing.")] = False,
    origin: From = "local",
    backup_dir: BackupDir = None,
    max_backups: MaxBackups = None,
    s3_url: S3Url = None,
    retention_days: RetentionDays = None,
    keep_daily: KeepDaily = None,
    keep_weekly: KeepWeekly = None,
    keep_monthly: KeepMonthly = None,
    json_output: JsonOutput = False,
) -> None:
    """Apply retention now to every database's archives (backups do this after each success)."""
    cli = cli_values(ctx, {k: v for k, v in locals().items() if k != "origin"})

    def body(reporter: Reporter) -> int:
        from chrono_ci.retention.apply import prune as apply_retention

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        reporter.step(
            f"retention ({settings.retention.describe()})" + (": dry run, nothing is deleted" if dry_run else "")
        )
        key = settings.signing_key
        if origin_of(origin) == "s3":
            storage = s3_storage(settings)
            done = apply_retention(settings.retention, reporter, storage=storage, key=key, dry_run=dry_run)
        else:
            done = apply_retention(settings.retention, reporter, folder=settings.backup_dir, key=key, dry_run=dry_run)
        if State.json_mode:
            removed = [decision.archive.key for decision in done.removed]
            document = PruneDocument(ok=True, dry_run=dry_run, removed=removed, rejected=rejections(done.rejected))
            reporter.emit_json(document.to_json())
        return 0

    guarded(body, json_output, PruneDocument)
