"""`chrono-ci backup postgres|supabase|all|test`: make backups (with the heartbeat when one is configured), and
test the newest ones."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from chrono_ci import __version__
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.cli.command import State, cli_values, guarded
from chrono_ci.cli.options import (
    ArtifactName,
    BackupDir,
    Compress,
    Compression,
    DatabaseUrl,
    JsonOutput,
    KeepDaily,
    KeepLocal,
    KeepMonthly,
    KeepWeekly,
    Level,
    MaxBackups,
    PgBinDir,
    RetentionDays,
    S3Url,
    SupabaseUrl,
    Upload,
    Verify,
)
from chrono_ci.config.options import env_name
from chrono_ci.config.settings import Encryption, Settings, resolve_settings
from chrono_ci.errors import ChronoError, ExitCode, ObjectNotFound
from chrono_ci.jobs.backup import BackupResult
from chrono_ci.jobs.backup_all import print_summary, run_kinds
from chrono_ci.report.console import Reporter
from chrono_ci.report.results import BackupDocument, Failure, Made, TestDocument, rejections
from chrono_ci.verify.integrity import IntegrityReport

backup_app = typer.Typer(help="Make backups (the guide's backup:postgres, backup:supabase, backup:all, backup:test).")


def _settings_report(settings: Settings, reporter: Reporter) -> None:
    reporter.info(f"backup folder: {settings.backup_dir.resolve()}")
    level = f" level {settings.compression_level}" if settings.compression != "none" else ""
    reporter.info(f"compression: {settings.compression}{level}")
    reporter.info(f"rotation: newest {settings.max_backups} per database")
    reporter.info(f"verification: {settings.verify}")
    if settings.encryption.enabled:
        reporter.info(f"encryption: age, to {len(settings.encryption.recipients)} recipient(s)")


def _backup_kinds(kinds: list[str], cli: dict[str, str | None], json_output: bool) -> None:
    def body(reporter: Reporter) -> int:
        from time import monotonic

        started = monotonic()
        beat = None
        # Only with a heartbeat configured: its HTTP stack (ssl included) costs several MB of memory.
        if any(env_name(name) in os.environ for name in ("heartbeat_url", "heartbeat_fail_url")):
            from chrono_ci.jobs.heartbeat import heartbeat_config

            # A malformed heartbeat URL stops the run here (exit 2), before anything is dumped.
            beat = heartbeat_config(os.environ)
        if beat is not None:
            reporter.add_secrets(beat.secrets())
        results: list[BackupResult] = []
        failures: list[tuple[str, ChronoError]] = []
        secrets: list[str] = []

        def ping(more: list[tuple[str, ChronoError]]) -> None:
            if beat is None:
                return
            from chrono_ci.jobs.heartbeat import backup_body, send_heartbeat

            failed = [*failures, *more]
            document = backup_body(
                "backup " + ("all" if len(kinds) > 1 else kinds[0]),
                [r.record.to_entry() for r in results],
                failed,
                monotonic() - started,
                secrets=secrets,
            )
            if send_heartbeat(not failed, document, os.environ, reporter.warn):
                reporter.ok(f"heartbeat sent ({'failure' if failed else 'success'})")

        try:
            settings = resolve_settings(cli)
            secrets = settings.secrets()
            reporter.add_secrets(secrets)
            reporter.step(f"chrono-ci {__version__}: backup {' + '.join(kinds)}")
            _settings_report(settings, reporter)
            run_kinds(settings, kinds, results, failures, reporter)
        except Exception as exc:  # a ChronoError, an interrupt, or a bug: the monitor hears of each
            error = exc if isinstance(exc, ChronoError) else ChronoError(f"unexpected {type(exc).__name__}")
            ping([(kinds[0] if len(kinds) == 1 else "backup", error)])
            raise
        print_summary(settings, results, failures, reporter)
        ping([])
        if State.json_mode:
            document = BackupDocument(
                ok=not failures,
                backups=[Made(r.record, str(r.path) if r.record.local else "") for r in results],
                removed=[d.archive.key for r in results for d in r.removed],
                rejected=rejections(v for r in results for v in r.rejected),
                failed=[Failure(e.message, e.hint, int(e.exit_code), kind) for kind, e in failures],
            )
            reporter.emit_json(document.to_json())
        return int(failures[0][1].exit_code) if failures else 0

    guarded(body, json_output, BackupDocument)


@backup_app.command("postgres")
def backup_postgres(
    ctx: typer.Context,
    database_url: DatabaseUrl = None,
    backup_dir: BackupDir = None,
    max_backups: MaxBackups = None,
    compress: Compress = None,
    compression: Compression = None,
    compression_level: Level = None,
    verify: Verify = None,
    pg_bin_dir: PgBinDir = None,
    upload: Upload = None,
    s3_url: S3Url = None,
    keep_local: KeepLocal = None,
    artifact_name: ArtifactName = None,
    retention_days: RetentionDays = None,
    keep_daily: KeepDaily = None,
    keep_weekly: KeepWeekly = None,
    keep_monthly: KeepMonthly = None,
    json_output: JsonOutput = False,
) -> None:
    """Back up the PostgreSQL database at DATABASE_URL (the guide's backup:postgres)."""
    _backup_kinds(["postgres"], cli_values(ctx, locals()), json_output)


@backup_app.command("supabase")
def backup_supabase(
    ctx: typer.Context,
    supabase_db_url: SupabaseUrl = None,
    backup_dir: BackupDir = None,
    max_backups: MaxBackups = None,
    compress: Compress = None,
    compression: Compression = None,
    compression_level: Level = None,
    verify: Verify = None,
    pg_bin_dir: PgBinDir = None,
    upload: Upload = None,
    s3_url: S3Url = None,
    keep_local: KeepLocal = None,
    artifact_name: ArtifactName = None,
    retention_days: RetentionDays = None,
    keep_daily: KeepDaily = None,
    keep_weekly: KeepWeekly = None,
    keep_monthly: KeepMonthly = None,
    json_output: JsonOutput = False,
) -> None:
    """Back up the Supabase database at SUPABASE_DB_URL (the guide's backup:supabase)."""
    _backup_kinds(["supabase"], cli_values(ctx, locals()), json_output)


@backup_app.command("all")
def backup_all(
    ctx: typer.Context,
    database_url: DatabaseUrl = None,
    supabase_db_url: SupabaseUrl = None,
    backup_dir: BackupDir = None,
    max_backups: MaxBackups = None,
    compress: Compress = None,
    compression: Compression = None,
    compression_level: Level = None,
    verify: Verify = None,
    pg_bin_dir: PgBinDir = None,
    upload: Upload = None,
    s3_url: S3Url = None,
    keep_local: KeepLocal = None,
    artifact_name: ArtifactName = None,
    retention_days: RetentionDays = None,
    keep_daily: KeepDaily = None,
    keep_weekly: KeepWeekly = None,
    keep_monthly: KeepMonthly = None,
    json_output: JsonOutput = False,
) -> None:
    """Back up every configured database; goes on after a failure and exits non-zero if any failed."""
    _backup_kinds(["postgres", "supabase"], cli_values(ctx, locals()), json_output)


@backup_app.command("test")
def backup_test(ctx: typer.Context, backup_dir: BackupDir = None, json_output: JsonOutput = False) -> None:
    """Check the newest archive of each kind: checksum, full decompression, trailer (the guide's backup:test)."""
    cli = cli_values(ctx, locals())

    def body(reporter: Reporter) -> int:
        from datetime import UTC, datetime

        from chrono_ci.archive.catalog import in_folder, newest_per_kind, trusted_records
        from chrono_ci.retention.apply import report_rejected

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        reporter.step(f"testing the newest archives in {settings.backup_dir}")
        folder = settings.backup_dir
        judged = in_folder(folder, settings.signing_key, datetime.now(UTC))
        rejected = [v for v in judged if not v.trusted]
        report_rejected(rejected, reporter)
        # The newest record chrono-ci believes: a forged one must not stand in for the real newest backup.
        newest = newest_per_kind(trusted_records(judged))
        if not newest:
            raise ObjectNotFound(
                f"No backup to test in {folder}: backup_metadata.json lists none"
                + (" that chrono-ci trusts." if rejected else "."),
                hint="Make one with `chrono-ci backup postgres`, or set BACKUP_DIR to the folder holding them.",
            )
        reports = [_test_one(folder, entry, settings.encryption, reporter) for entry in newest]
        ok = all(r.ok for r in reports)
        if State.json_mode:
            document = TestDocument(ok=ok, results=[r.tested() for r in reports], rejected=rejections(rejected))
            reporter.emit_json(document.to_json())
        return 0 if ok else int(ExitCode.VERIFY)

    guarded(body, json_output, TestDocument)


def _test_one(folder: Path, record: ArchiveRecord, encryption: Encryption, reporter: Reporter) -> IntegrityReport:
    from chrono_ci.archive.safefile import open_archive
    from chrono_ci.errors import StorageError
    from chrono_ci.verify.integrity import Check, check_stream

    name = record.file
    reporter.step(f"{record.kind}: {name}")
    encrypted = name.endswith(".age")
    try:
        handle = open_archive(folder, name)
    except StorageError as error:
        report = IntegrityReport(file=name, checks=[Check("readable", False, error.message)])
    else:
        with handle:
            report = check_stream(
                handle,
                name,
                record.stored_compression,
                record,
                encrypted=encrypted,
                decrypt=encryption.decrypt_for(encrypted) if encryption.can_decrypt else None,
                profile=record.kind,
            )
    report.print(reporter)
    return report
