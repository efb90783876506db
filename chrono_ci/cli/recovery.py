"""`chrono-ci recovery list|test|restore`: list the archives, test one (and prove it by a scratch restore), and
restore one safely."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Annotated, Any

import typer

from chrono_ci import __version__
from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.archive.vouching import Provenance
from chrono_ci.cli.command import State, cli_values, guarded, origin_of, s3_storage
from chrono_ci.cli.options import (
    AllowUnlisted,
    BackupDir,
    FileArg,
    From,
    JsonOutput,
    LockTimeout,
    MaxBackups,
    PgBinDir,
    S3Url,
    ScratchUrl,
    TargetUrl,
)
from chrono_ci.config.settings import Settings, resolve_settings
from chrono_ci.errors import ExitCode
from chrono_ci.jobs.backup import run_backup
from chrono_ci.report.console import Reporter
from chrono_ci.report.results import ListDocument, RestoreDocument, TestDocument
from chrono_ci.verify.integrity import IntegrityReport, check_before_restore, streams_its_proof

recovery_app = typer.Typer(
    help="List, test and restore backups (the guide's recovery:list, recovery:test, recovery:restore)."
)


@recovery_app.command("list")
def recovery_list(
    ctx: typer.Context,
    backup_dir: BackupDir = None,
    checksums: Annotated[bool, typer.Option("--checksums/--no-checksums", help="Re-read every archive.")] = True,
    origin: From = "local",
    s3_url: S3Url = None,
    json_output: JsonOutput = False,
) -> None:
    """List every archive with its kind, database, time, size, compression and whether its checksum matches."""
    cli = cli_values(ctx, {k: v for k, v in locals().items() if k != "origin"})

    def body(reporter: Reporter) -> int:
        from chrono_ci.archive.listing import local_rows, print_rows, remote_rows

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        key = settings.signing_key
        if origin_of(origin) == "s3":
            storage = s3_storage(settings)
            rows, location = remote_rows(storage, key), storage.url
        else:
            rows, location = local_rows(settings.backup_dir, checksums, key), str(settings.backup_dir)
        if State.json_mode:
            reporter.emit_json(ListDocument(ok=True, location=location, archives=rows).to_json())
        print_rows(rows, location, reporter)
        damaged = any(row["checksum"] in ("MISMATCH", "UNREADABLE") or row["signature"] == "invalid" for row in rows)
        return int(ExitCode.VERIFY) if damaged else 0

    guarded(body, json_output, ListDocument)


@recovery_app.command("test")
def recovery_test(
    ctx: typer.Context,
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
    json_output: JsonOutput = False,
) -> None:
    """The guide's integrity test of FILE: checksum, full decompression, trailer; --restore proves it by restoring."""
    cli = cli_values(ctx, {k: v for k, v in locals().items() if k not in ("file", "origin")})

    def body(reporter: Reporter) -> int:
        from chrono_ci.archive.locate import located_archive

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        with located_archive(file, settings.backup_dir, origin_of(origin), settings.s3_url, os.environ) as archive:
            return _test_archive(archive, settings, restore, allow_unlisted, reporter)

    guarded(body, json_output, TestDocument)


def _provenance(
    archive: ArchiveFile, settings: Settings, reporter: Reporter, *, required: bool, allow_unlisted: bool
) -> Provenance:
    """The archive's record, judged (chrono_ci/archive/provenance.py); when `required` (a restore into any server), an
    archive no trusted record vouches for stops here, before it is read."""
    from datetime import UTC, datetime

    from chrono_ci.archive.vouching import judge_archive, provenance_document, require_provenance

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
    if document.trusted:
        signed = {"valid": ", signature valid", "unchecked": ", signed (no key to check it)"}
        reporter.ok(f"record: {document.record}{signed.get(document.signature, ', unsigned')}")
    return document


def _test_archive(
    archive: ArchiveFile, settings: Settings, restore: bool, allow_unlisted: bool, reporter: Reporter
) -> int:
    from chrono_ci.restore.replay import Expected
    from chrono_ci.verify.scratch import restore_verify

    reporter.step(f"testing {archive.path}")
    provenance = _provenance(archive, settings, reporter, required=restore, allow_unlisted=allow_unlisted)
    decrypt = settings.encryption.decrypt_for(archive.encrypted)
    # With --restore and a record to prove it against, the restore's own stream is the full read: reading the
    # archive once before would double the work of a restore-verification.
    streamed = restore and streams_its_proof(archive.record)
    report = check_before_restore(archive, decrypt, streamed=streamed)
    report.print(reporter, verdict=not streamed)
    ok = report.ok
    proven: dict[str, Any] | None = None
    if restore and report.ok and (streamed or report.contents is not None):
        reporter.step("restore-verification")
        if streamed:
            reporter.info(
                "checksum, decompression, trailer, dump rules, raw size and row counts: proven as the archive "
                "streams into the scratch database"
            )
        streamed_report = IntegrityReport(file=archive.path.name)
        proof = restore_verify(
            archive.path,
            archive.compression,
            Expected.of(archive.record, report.contents),
            settings.scratch,
            profile=archive.kind,
            decrypt=decrypt,
            integrity=streamed_report,
        )
        if streamed:
            streamed_report.print(reporter, verdict=False)
            report.checks += streamed_report.checks
            report.contents = streamed_report.contents
            ok = report.ok
        (reporter.ok if proof.ok else reporter.fail)(f"restore: {proof.summary()}")
        if proof.missing_extensions:
            reporter.info("give --scratch-url (SCRATCH_DATABASE_URL) a server that has those extensions")
        proven = proof.as_dict()
        ok = ok and proof.ok
    elif restore:
        reporter.fail("restore: not attempted, the archive failed its integrity test")
        ok = False
    if State.json_mode:
        tested = replace(report.tested(provenance, proven), ok=ok)
        reporter.emit_json(TestDocument(ok=ok, results=[tested]).to_json())
    reporter.line(f"{archive.path.name}: {'every check passed' if ok else 'FAILED'}")
    if ok:
        return 0
    refused = any(check.name == "contents" for check in report.failed())
    return int(ExitCode.UNTRUSTED if refused else ExitCode.VERIFY)


@recovery_app.command("restore")
def recovery_restore(
    ctx: typer.Context,
    file: FileArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Test the archive and the target, show the plan, change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm without a prompt (required without a terminal).")] = False,
    target_url: TargetUrl = None,
    lock_timeout: LockTimeout = None,
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
    json_output: JsonOutput = False,
) -> None:
    """Restore FILE: integrity test, plan, confirmation, safety backup, one all-or-nothing transaction."""
    cli = cli_values(ctx, {k: v for k, v in locals().items() if k not in ("file", "origin")})

    def body(reporter: Reporter) -> int:
        from chrono_ci.archive.locate import located_archive
        from chrono_ci.profiles import profile_of_archive
        from chrono_ci.restore.plan import terminal_prompt
        from chrono_ci.restore.run import run_restore
        from chrono_ci.restore.session import SessionRules

        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        with located_archive(file, settings.backup_dir, origin_of(origin), settings.s3_url, os.environ) as archive:
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
                sessions=SessionRules(settings.lock_timeout, terminate_sessions),
                safety_backup=lambda target: (
                    run_backup(settings, archive.kind, reporter, series="safety", target=target).record.file
                ),
                profile=profile_of_archive(archive),
            )
        if State.json_mode:
            reporter.emit_json(replace(result, provenance=provenance).to_json())
        return 0

    guarded(body, json_output, RestoreDocument)
