"""The chrono-ci command: parse, resolve settings, call one function, print. Logic lives in the modules."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer

from chrono_ci import __version__
from chrono_ci.archive.catalog import ArchiveFile
from chrono_ci.archive.manifest import Manifest, newest_per_kind
from chrono_ci.config.settings import Encryption, Settings, resolve_settings
from chrono_ci.errors import ChronoError, ConfigError, ExitCode, Interrupted, ObjectNotFound
from chrono_ci.jobs.backup import BackupResult, run_backup
from chrono_ci.report.console import Reporter, human_size
from chrono_ci.storage.base import Storage
from chrono_ci.verify.integrity import IntegrityReport, check_archive

app = typer.Typer(
    name="chrono-ci",
    help="Verified, streaming PostgreSQL and Supabase backups for CI: dump, prove, rotate, upload, restore.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
backup_app = typer.Typer(help="Make backups (the guide's backup:postgres, backup:supabase, backup:all, backup:test).")
app.add_typer(backup_app, name="backup")
recovery_app = typer.Typer(
    help="List, test and restore backups (the guide's recovery:list, recovery:test, recovery:restore)."
)
app.add_typer(recovery_app, name="recovery")


class State:
    json_mode = False
    debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chrono-ci {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout; logs go to stderr.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback for unexpected errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    State.json_mode = json_output
    State.debug = debug


# Every option is a string here and is parsed by settings.py, so that an option and its environment variable
# are validated by the same code and produce the same error.
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="PostgreSQL URL without a password [env: DATABASE_URL].")
]
SupabaseUrl = Annotated[
    str | None,
    typer.Option("--supabase-db-url", help="Supabase URL without a password [env: SUPABASE_DB_URL]."),
]
BackupDir = Annotated[str | None, typer.Option("--backup-dir", help="Backup folder [env: BACKUP_DIR; ./backups].")]
MaxBackups = Annotated[
    str | None, typer.Option("--max-backups", help="Archives kept per database [env: MAX_BACKUPS; 30].")
]
Compress = Annotated[
    str | None, typer.Option("--compress", help="true|false [env: COMPRESS_BACKUPS; true].", metavar="BOOL")
]
Compression = Annotated[
    str | None, typer.Option("--compression", help="zstd|gzip|none [env: BACKUP_COMPRESSION; zstd].")
]
Level = Annotated[
    str | None,
    typer.Option("--compression-level", help="zstd 1-19, gzip 1-9 [env: BACKUP_COMPRESSION_LEVEL; 1 / 6]."),
]
Verify = Annotated[
    str | None,
    typer.Option("--verify", help="check|restore: check after each backup [env: BACKUP_VERIFY; check]."),
]
Upload = Annotated[
    str | None,
    typer.Option("--upload", help="none|s3|artifact|s3,artifact [env: BACKUP_UPLOAD; s3 when S3_URL is set]."),
]
S3Url = Annotated[str | None, typer.Option("--s3-url", help="s3://bucket/prefix [env: S3_URL].")]
KeepLocal = Annotated[
    str | None,
    typer.Option(
        "--keep-local", help="true|false: keep uploaded archives in BACKUP_DIR [env: KEEP_LOCAL; true].", metavar="BOOL"
    ),
]
ArtifactName = Annotated[
    str | None, typer.Option("--artifact-name", help="[env: ARTIFACT_NAME; unique per run and database].")
]
RetentionDays = Annotated[
    str | None, typer.Option("--retention-days", help="Also keep archives younger than N days [env: RETENTION_DAYS].")
]
KeepDaily = Annotated[
    str | None, typer.Option("--keep-daily", help="GFS: newest of the last N days [env: KEEP_DAILY].")
]
KeepWeekly = Annotated[
    str | None, typer.Option("--keep-weekly", help="GFS: newest of the last N weeks [env: KEEP_WEEKLY].")
]
KeepMonthly = Annotated[
    str | None, typer.Option("--keep-monthly", help="GFS: newest of the last N months [env: KEEP_MONTHLY].")
]
From = Annotated[str, typer.Option("--from", help="local (BACKUP_DIR) or s3 (S3_URL). A FILE of s3://... implies s3.")]
PgBinDir = Annotated[
    str | None, typer.Option("--pg-bin-dir", help="Use only the pg_dump in this folder [env: PG_BIN_DIR].")
]


def _reporter(settings: Settings | None = None) -> Reporter:
    reporter = Reporter(json_mode=State.json_mode)
    if settings is not None:
        reporter.add_secrets(settings.secrets())
    return reporter


def _fail(error: ChronoError, reporter: Reporter) -> NoReturn:
    reporter.error(error)
    if State.json_mode:
        reporter.emit_json(
            {
                "ok": False,
                "error": {"message": error.message, "hint": error.hint, "exit_code": int(error.exit_code)},
            }
        )
    raise typer.Exit(int(error.exit_code))


def _guarded(action: Callable[[Reporter], int]) -> None:
    """Run a command body: ChronoError -> message, hint and exit code; anything else -> a short bug report."""
    reporter = _reporter()
    try:
        code = action(reporter)
    except ChronoError as error:
        _fail(error, reporter)
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if State.debug:
            traceback.print_exc()
        reporter.line(f"error: unexpected {type(exc).__name__}: {reporter.scrub(str(exc))}")
        reporter.line("hint:  this is a bug in chrono-ci; run again with --debug and report the traceback.")
        raise typer.Exit(int(ExitCode.FAILED)) from None
    raise typer.Exit(code)


def _settings_report(settings: Settings, reporter: Reporter) -> None:
    reporter.info(f"backup folder: {settings.backup_dir.resolve()}")
    level = f" level {settings.compression_level}" if settings.compression != "none" else ""
    reporter.info(f"compression: {settings.compression}{level}")
    reporter.info(f"rotation: newest {settings.max_backups} per database")
    reporter.info(f"verification: {settings.verify}")
    if settings.encryption.enabled:
        count = len(settings.encryption.recipients)
        to = f"{count} recipient(s)" if count else "a passphrase"
        reporter.info(f"encryption: age, to {to}")


def _backup_kinds(kinds: list[str], optional: set[str], cli: dict[str, str | None]) -> None:
    def body(reporter: Reporter) -> int:
        from time import monotonic

        started = monotonic()
        beat = None
        # Only with a heartbeat configured: its HTTP stack (ssl included) costs several MB of memory.
        if "HEARTBEAT_URL" in os.environ or "HEARTBEAT_FAIL_URL" in os.environ:
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
                [r.entry for r in results],
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
            _run_kinds(settings, kinds, optional, results, failures, reporter)
        except Exception as exc:  # a ChronoError, an interrupt, or a bug: the monitor hears of each
            error = exc if isinstance(exc, ChronoError) else ChronoError(f"unexpected {type(exc).__name__}")
            ping([(kinds[0] if len(kinds) == 1 else "backup", error)])
            raise
        _summary(settings, results, failures, reporter)
        ping([])
        if State.json_mode:
            reporter.emit_json(
                {
                    "ok": not failures,
                    "backups": [dict(r.entry, path=str(r.path)) for r in results],
                    "removed": [d.archive.key for r in results for d in r.removed],
                    "rejected": [v.rejection() for r in results for v in r.rejected],
                    "failed": [
                        {"kind": k, "message": e.message, "hint": e.hint, "exit_code": int(e.exit_code)}
                        for k, e in failures
                    ],
                }
            )
        return int(failures[0][1].exit_code) if failures else 0

    _guarded(body)


def _run_kinds(
    settings: Settings,
    kinds: list[str],
    optional: set[str],
    results: list[BackupResult],
    failures: list[tuple[str, ChronoError]],
    reporter: Reporter,
) -> None:
    for kind in kinds:
        if kind in optional and (settings.supabase if kind == "supabase" else settings.database) is None:
            reporter.step(f"{kind}: skipped")
            reporter.info("SUPABASE_DB_URL is not set: no Supabase database to back up (not an error)")
            continue
        reporter.step(f"{kind} backup")
        # Artifact names are unique per workflow run: two archives in one run need two names.
        artifact_name = settings.artifact_name
        if artifact_name and len(kinds) > 1:
            artifact_name = f"{artifact_name}-{kind}"
        try:
            results.append(run_backup(settings, kind, reporter, artifact_name=artifact_name))
        except ChronoError as error:
            if len(kinds) == 1:
                raise
            reporter.fail(f"{kind} backup failed")
            reporter.error(error)
            failures.append((kind, error))


def _summary(
    settings: Settings,
    results: list[BackupResult],
    failures: list[tuple[str, ChronoError]],
    reporter: Reporter,
) -> None:
    reporter.step("summary")
    for result in results:
        reporter.ok(f"{result.kind}: {result.entry['file']} ({human_size(result.entry['size_bytes'])}), verified")
    for kind, error in failures:
        reporter.fail(f"{kind}: {error.message.splitlines()[0]}")
    try:
        entries = Manifest(settings.backup_dir).read()
    except ChronoError:
        entries = []
    present = [e for e in entries if (settings.backup_dir / e["file"]).is_file()]
    total = sum(int(e.get("size_bytes", 0)) for e in present)
    reporter.info(f"{len(present)} archive(s) in {settings.backup_dir}, {human_size(total)} in all")
    if failures:
        reporter.line(f"{len(failures)} of {len(failures) + len(results)} backup(s) FAILED")
    else:
        reporter.line(f"All {len(results)} backup(s) succeeded and were verified.")


@backup_app.command("postgres")
def backup_postgres(
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
) -> None:
    """Back up the PostgreSQL database at DATABASE_URL (the guide's backup:postgres)."""
    _backup_kinds(["postgres"], set(), _cli_values(locals()))


@backup_app.command("supabase")
def backup_supabase(
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
) -> None:
    """Back up the Supabase database at SUPABASE_DB_URL (the guide's backup:supabase)."""
    _backup_kinds(["supabase"], set(), _cli_values(locals()))


@backup_app.command("all")
def backup_all(
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
) -> None:
    """Back up every configured database; goes on after a failure and exits non-zero if any failed."""
    _backup_kinds(["postgres", "supabase"], {"supabase"}, _cli_values(locals()))


@backup_app.command("test")
def backup_test(backup_dir: BackupDir = None) -> None:
    """Check the newest archive of each kind: checksum, full decompression, trailer (the guide's backup:test)."""
    cli = _cli_values(locals())

    def body(reporter: Reporter) -> int:
        from datetime import UTC, datetime

        from chrono_ci.archive.provenance import vet_folder
        from chrono_ci.retention.apply import report_rejected

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        reporter.step(f"testing the newest archives in {settings.backup_dir}")
        folder = settings.backup_dir
        judged = vet_folder(folder, Manifest(folder).read(), settings.signing_key, datetime.now(UTC))
        rejected = [v for v in judged if not v.trusted]
        report_rejected(rejected, reporter)
        # The newest record chrono-ci believes: a forged one must not stand in for the real newest backup.
        newest = newest_per_kind([dict(v.entry) for v in judged if v.trusted and v.entry is not None])
        if not newest:
            raise ObjectNotFound(
                f"No backup to test in {folder}: backup_metadata.json lists none"
                + (" that chrono-ci trusts." if rejected else "."),
                hint="Make one with `chrono-ci backup postgres`, or set BACKUP_DIR to the folder holding them.",
            )
        reports = [_test_one(folder, entry, settings.encryption, reporter) for entry in newest]
        ok = all(r.ok for r in reports)
        if State.json_mode:
            reporter.emit_json(
                {"ok": ok, "results": [r.as_dict() for r in reports], "rejected": [v.rejection() for v in rejected]}
            )
        return 0 if ok else int(ExitCode.VERIFY)

    _guarded(body)


def _test_one(folder: Path, entry: dict[str, Any], encryption: Encryption, reporter: Reporter) -> IntegrityReport:
    from chrono_ci.archive.safefile import open_archive
    from chrono_ci.errors import StorageError
    from chrono_ci.verify.integrity import Check, check_stream

    name = str(entry["file"])
    reporter.step(f"{entry.get('kind')}: {name}")
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
                entry.get("compression", "none"),
                entry,
                encrypted=encrypted,
                decrypt=encryption.decrypt_for(encrypted) if encryption.can_decrypt else None,
                profile="supabase" if entry.get("kind") == "supabase" else "postgres",
            )
    print_checks(report, reporter)
    return report


def print_checks(report: IntegrityReport, reporter: Reporter) -> None:
    for check in report.checks:
        if check.ok is True:
            reporter.ok(f"{check.name}: {check.detail}")
        elif check.ok is None:
            reporter.info(f"{check.name}: {check.detail}")
        else:
            reporter.fail(f"{check.name}: {check.detail}")
    reporter.line(f"{report.file}: {'valid' if report.ok else 'FAILED: ' + ', '.join(c.name for c in report.failed())}")


ScratchUrl = Annotated[
    str | None,
    typer.Option(
        "--scratch-url",
        help="Server where a temporary database may be created for --restore/--verify restore, without a password "
        "[env: SCRATCH_DATABASE_URL; a throwaway embedded PostgreSQL 18].",
    ),
]
FileArg = Annotated[str, typer.Argument(help="An archive name in BACKUP_DIR, or a path to one.", metavar="FILE")]
AllowUnlisted = Annotated[
    bool,
    typer.Option(
        "--allow-unlisted",
        help="Restore FILE even though no trusted record vouches for it (none in backup_metadata.json or the "
        "S3 object's metadata, or, with BACKUP_SIGNING_KEY, none signed). Only for an archive you know is yours.",
    ),
]


@recovery_app.command("list")
def recovery_list(
    backup_dir: BackupDir = None,
    checksums: Annotated[bool, typer.Option("--checksums/--no-checksums", help="Re-read every archive.")] = True,
    origin: From = "local",
    s3_url: S3Url = None,
) -> None:
    """List every archive with its kind, database, time, size, compression and whether its checksum matches."""
    cli = _cli_values({k: v for k, v in locals().items() if k != "origin"})

    def body(reporter: Reporter) -> int:
        from chrono_ci.archive.listing import local_rows, print_rows, remote_rows

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        key = settings.signing_key
        if _origin(origin) == "s3":
            storage = _s3_storage(settings)
            rows, location = remote_rows(storage, key), storage.url
        else:
            rows, location = local_rows(settings.backup_dir, checksums, key), str(settings.backup_dir)
        if State.json_mode:
            reporter.emit_json(rows)
        print_rows(rows, location, reporter)
        damaged = any(row["checksum"] in ("MISMATCH", "UNREADABLE") or row["signature"] == "invalid" for row in rows)
        return int(ExitCode.VERIFY) if damaged else 0

    _guarded(body)


@recovery_app.command("test")
def recovery_test(
    file: FileArg,
    restore: Annotated[
        bool, typer.Option("--restore", help="Also restore into a scratch database and compare row counts.")
    ] = False,
    scratch_url: ScratchUrl = None,
    backup_dir: BackupDir = None,
    pg_bin_dir: PgBinDir = None,
    origin: From = "local",
    s3_url: S3Url = None,
    allow_unlisted: AllowUnlisted = False,
) -> None:
    """The guide's integrity test of FILE: checksum, full decompression, trailer; --restore proves it by restoring."""
    cli = _cli_values({k: v for k, v in locals().items() if k not in ("file", "origin")})

    def body(reporter: Reporter) -> int:
        from chrono_ci.archive.catalog import located_archive

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        with located_archive(file, settings.backup_dir, _origin(origin), settings.s3_url, os.environ) as archive:
            return _test_archive(archive, settings, restore, allow_unlisted, reporter)

    _guarded(body)


def _provenance(
    archive: ArchiveFile, settings: Settings, reporter: Reporter, *, required: bool, allow_unlisted: bool
) -> dict[str, Any]:
    """The archive's record, judged (chrono_ci/archive/provenance.py); when `required` (a restore into any server), an
    archive no trusted record vouches for stops here, before it is read."""
    from datetime import UTC, datetime

    from chrono_ci.archive.provenance import judge_archive, provenance_document, require_provenance

    now = datetime.now(UTC)
    if required:
        document = require_provenance(
            archive, settings.signing_key, allow_unlisted=allow_unlisted, warn=reporter.warn, now=now
        )
    else:
        verdict = judge_archive(archive, settings.signing_key, now)
        document = provenance_document(archive, verdict)
        if not verdict.trusted:
            reporter.warn(
                f"{archive.path.name} is not vouched for by a trusted record ({verdict.problem}): restoring it "
                "needs --allow-unlisted"
            )
    if document["trusted"]:
        signed = {"valid": ", signature valid", "unchecked": ", signed (no key to check it)"}
        reporter.ok(f"record: {document['record']}{signed.get(document['signature'], ', unsigned')}")
    return document


def _test_archive(
    archive: ArchiveFile, settings: Settings, restore: bool, allow_unlisted: bool, reporter: Reporter
) -> int:
    from chrono_ci.restore.replay import Expected
    from chrono_ci.verify.scratch import restore_verify

    reporter.step(f"testing {archive.path}")
    provenance = _provenance(archive, settings, reporter, required=restore, allow_unlisted=allow_unlisted)
    decrypt = settings.encryption.decrypt_for(archive.encrypted)
    report = check_archive(
        archive.path,
        archive.compression,
        archive.entry,
        encrypted=archive.encrypted,
        decrypt=decrypt,
        profile=archive.kind,
    )
    print_checks(report, reporter)
    document: dict[str, Any] = {**report.as_dict(), "provenance": provenance}
    ok = report.ok
    if restore and report.ok and report.contents is not None:
        reporter.step("restore-verification")
        proof = restore_verify(
            archive.path,
            archive.compression,
            Expected.of(archive.entry, report.contents),
            settings.scratch,
            profile=archive.kind,
            decrypt=decrypt,
        )
        (reporter.ok if proof.ok else reporter.fail)(f"restore: {proof.summary()}")
        if proof.missing_extensions:
            reporter.info("give --scratch-url (SCRATCH_DATABASE_URL) a server that has those extensions")
        document["restore"] = proof.as_dict()
        ok = ok and proof.ok
    elif restore:
        reporter.fail("restore: not attempted, the archive failed its integrity test")
        ok = False
    document["ok"] = ok
    if State.json_mode:
        reporter.emit_json(document)
    reporter.line(f"{archive.path.name}: {'every check passed' if ok else 'FAILED'}")
    if ok:
        return 0
    refused = any(check.name == "contents" for check in report.failed())
    return int(ExitCode.UNTRUSTED if refused else ExitCode.VERIFY)


@recovery_app.command("restore")
def recovery_restore(
    file: FileArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Test the archive and the target, show the plan, change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm without a prompt (required without a terminal).")] = False,
    target_url: Annotated[
        str | None,
        typer.Option(
            "--target-url",
            help="Restore into this database instead, without a password [env: RESTORE_TARGET_URL; default: "
            "DATABASE_URL or SUPABASE_DB_URL by the backup's kind].",
        ),
    ] = None,
    lock_timeout: Annotated[
        float,
        typer.Option(
            "--lock-timeout",
            min=0.1,
            envvar="RESTORE_LOCK_TIMEOUT",
            help="Seconds to wait for a lock another session holds before giving up (env RESTORE_LOCK_TIMEOUT).",
        ),
    ] = 10.0,
    terminate_sessions: Annotated[
        bool,
        typer.Option("--terminate-sessions", help="End the other sessions on the target database first."),
    ] = False,
    backup_dir: BackupDir = None,
    max_backups: MaxBackups = None,
    pg_bin_dir: PgBinDir = None,
    origin: From = "local",
    s3_url: S3Url = None,
    allow_unlisted: AllowUnlisted = False,
) -> None:
    """Restore FILE: integrity test, plan, confirmation, safety backup, one all-or-nothing transaction."""
    cli = _cli_values(
        {k: v for k, v in locals().items() if k not in ("file", "origin", "lock_timeout", "terminate_sessions")}
    )

    def body(reporter: Reporter) -> int:
        from chrono_ci.archive.catalog import located_archive
        from chrono_ci.restore.plan import terminal_prompt
        from chrono_ci.restore.run import run_restore
        from chrono_ci.restore.session import SessionRules

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        with located_archive(file, settings.backup_dir, _origin(origin), settings.s3_url, os.environ) as archive:
            reporter.step(f"chrono-ci {__version__}: restore {archive.path.name}" + (" (dry run)" if dry_run else ""))
            # Before the restore engine reads a byte: an archive anyone could have planted goes no further.
            provenance = _provenance(archive, settings, reporter, required=True, allow_unlisted=allow_unlisted)
            result = run_restore(
                settings,
                archive,
                reporter,
                dry_run=dry_run,
                yes=yes,
                target=settings.restore_target,
                ask=terminal_prompt(),
                sessions=SessionRules(lock_timeout, terminate_sessions),
                safety_backup=lambda target: run_backup(
                    settings, archive.kind, reporter, series="safety", target=target
                ).entry["file"],
            )
        if State.json_mode:
            reporter.emit_json({**result, "provenance": provenance})
        return 0

    _guarded(body)


@app.command("prune")
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the decision; delete nothing.")] = False,
    origin: From = "local",
    backup_dir: BackupDir = None,
    max_backups: MaxBackups = None,
    s3_url: S3Url = None,
    retention_days: RetentionDays = None,
    keep_daily: KeepDaily = None,
    keep_weekly: KeepWeekly = None,
    keep_monthly: KeepMonthly = None,
) -> None:
    """Apply retention now to every database's archives (backups do this after each success)."""
    cli = _cli_values({k: v for k, v in locals().items() if k != "origin"})

    def body(reporter: Reporter) -> int:
        from chrono_ci.retention.apply import prune as apply_retention

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        reporter.step(
            f"retention ({settings.retention.describe()})" + (": dry run, nothing is deleted" if dry_run else "")
        )
        key = settings.signing_key
        if _origin(origin) == "s3":
            storage = _s3_storage(settings)
            done = apply_retention(settings.retention, reporter, storage=storage, key=key, dry_run=dry_run)
        else:
            done = apply_retention(settings.retention, reporter, folder=settings.backup_dir, key=key, dry_run=dry_run)
        if State.json_mode:
            reporter.emit_json(
                {
                    "ok": True,
                    "dry_run": dry_run,
                    "removed": [decision.archive.key for decision in done.removed],
                    "rejected": [vetted.rejection() for vetted in done.rejected],
                }
            )
        return 0

    _guarded(body)


def _origin(value: str) -> str:
    word = value.strip().lower()
    if word not in ("local", "s3"):
        raise ConfigError(f"--from {value!r} is not local or s3.", hint="Use --from local (default) or --from s3.")
    return word


def _s3_storage(settings: Settings) -> Storage:
    from chrono_ci.storage import open_storage

    if not settings.s3_url:
        raise ConfigError("--from s3 needs S3_URL.", hint="Set S3_URL=s3://bucket/prefix.")
    return open_storage(settings.s3_url)


@app.command("demo")
def demo(
    backup_dir: Annotated[str, typer.Option("--backup-dir", help="Where the demo's backups go.")] = "./chrono-ci-demo",
) -> None:
    """Start a throwaway PostgreSQL, load a sample shop database, and run the real commands against it."""
    from chrono_ci.jobs.demo import run_demo

    _guarded(lambda reporter: run_demo(Path(backup_dir), reporter))


@app.command("status")
def status(
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            metavar="DURATION",
            help="Exit 7 when any database's newest good backup is older than this: 26h, 90m, 7d, 1d12h.",
        ),
    ] = None,
    where: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="local|s3",
            help="local: BACKUP_DIR and its backup_metadata.json; s3: the objects under S3_URL.",
        ),
    ] = "local",
    backup_dir: BackupDir = None,
    json_output: Annotated[bool, typer.Option("--json", help="The same as the global --json.")] = False,
) -> None:
    """Newest good backup of each database: age, size, verification, copies, size trend (exit 7 if stale)."""
    cli = _cli_values({"backup_dir": backup_dir})
    State.json_mode = State.json_mode or json_output

    def body(reporter: Reporter) -> int:
        from datetime import UTC, datetime

        from chrono_ci.errors import ConfigError
        from chrono_ci.jobs.status import build_status, from_folder, from_s3, parse_duration, print_status

        limit = parse_duration(max_age, "--max-age") if max_age is not None else None
        origin = where.strip().lower()
        if origin == "s3":
            url = os.environ.get("S3_URL", "").strip()
            if not url:
                raise ConfigError(
                    "S3_URL is not set: `status --from s3` needs the bucket and prefix to read.",
                    hint="Set S3_URL=s3://BUCKET/PREFIX and the S3_* and AWS_* variables the backup job uses.",
                )
            from chrono_ci.storage.s3.store import S3Storage

            reporter.add_secrets(os.environ.get(n, "") for n in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
            from chrono_ci.archive.signing import signing_key_from_env

            key = signing_key_from_env(os.environ)
            reporter.add_secrets(key.secrets() if key is not None else [])
            storage = S3Storage.from_env(url)
            location, archives = storage.url, from_s3(storage, key)
        elif origin == "local":
            settings = resolve_settings(cli)
            reporter.add_secrets(settings.secrets())
            folder = settings.backup_dir
            location, archives = str(folder), from_folder(folder, settings.signing_key)
        else:
            raise ConfigError(f"--from={where!r} is not one of local, s3.", hint="Use --from local or --from s3.")
        report = build_status(archives, datetime.now(UTC), limit)
        print_status(report, reporter, location)
        if State.json_mode:
            reporter.emit_json({**report.as_dict(), "from": origin, "location": location})
        return 0 if report.ok else int(ExitCode.VERIFY)

    _guarded(body)


def _cli_values(values: dict[str, Any]) -> dict[str, str | None]:
    # Only the options that are settings; booleans such as --dry-run are the command's own.
    return {key: value for key, value in values.items() if isinstance(value, str) or value is None}


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Raising here unwinds through every `finally`, which removes temp files and kills pg_dump.
    signal.signal(signum, signal.SIG_DFL)
    raise Interrupted(
        f"Stopped by signal {signal.Signals(signum).name}: nothing was kept from the run in progress.",
        hint="Backups made before the signal are intact. Run again when ready.",
        exit_code=ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED,
    )


def main() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        app()
    except Interrupted as error:
        Reporter().error(error)
        sys.exit(int(error.exit_code))
