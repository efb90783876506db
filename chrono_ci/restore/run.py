"""A safe restore, in the guide's order: integrity test, plan, confirmation, safety backup, then one
all-or-nothing transaction that commits only once every table's row count matches the backup's record.

The integrity test comes before the restore takes effect, in two parts when a trusted record holds everything
to prove the archive against (sha256, the SQL's size, every table's row count): the cheap checks before the plan
(the file's size, the key), and the full proof (checksum, decompression, trailer, dump rules, raw size, row
counts) as the archive streams into the transaction, before COMMIT. Reading a large archive twice, once to check
it and once to restore it, would cost the restore most of a plain psql's time again. Without such a record, and in
a dry run (which streams nothing), the archive is read in full first.

The transaction first drops the target's user schemas and then replays the dump, so afterwards the target holds
exactly the backup (objects made after the backup are gone), or, on any error, exactly what it held before.
"""

from __future__ import annotations

from collections.abc import Callable

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.config.settings import Settings
from chrono_ci.errors import RestoreFailed, VerificationFailed
from chrono_ci.report.console import Reporter
from chrono_ci.report.results import RestoreDocument
from chrono_ci.restore.plan import RestoreProfile, confirm, plan_restore, print_plan
from chrono_ci.restore.replay import ArchiveRefused, Expected, replay_archive
from chrono_ci.restore.session import SessionRules
from chrono_ci.source.target import DatabaseTarget
from chrono_ci.verify.integrity import DecryptorFactory, IntegrityReport, check_before_restore, streams_its_proof


def integrity_first(archive: ArchiveFile, reporter: Reporter, decrypt: DecryptorFactory | None) -> IntegrityReport:
    """The full integrity test, a read of the whole archive, before anything is touched."""
    report = check_before_restore(archive, decrypt, streamed=False)
    report.print(reporter, verdict=False)
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


def cheap_first(archive: ArchiveFile, reporter: Reporter, decrypt: DecryptorFactory | None) -> IntegrityReport:
    """The checks that cost no read of the archive; the rest is proven as it streams, before COMMIT."""
    assert archive.record is not None  # streams_its_proof
    report = check_before_restore(archive, decrypt, streamed=True)
    report.print(reporter, verdict=False)
    if not report.ok:
        raise VerificationFailed(
            f"{archive.path.name} failed its integrity test ({', '.join(c.name for c in report.failed())}): "
            "refusing to restore it. Nothing was touched.",
            hint="Choose another archive from `chrono-ci recovery list`.",
        )
    reporter.info(
        "checksum, decompression, trailer, dump rules, raw size and row counts: proven as the archive streams "
        "into the restore's transaction, before COMMIT"
    )
    return report


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
    safety_backup: Callable[[DatabaseTarget], str],
    profile: RestoreProfile,
) -> RestoreDocument:
    """`safety_backup` backs up the target as it is now and returns the archive's name: the caller's backup job
    (chrono_ci.jobs.backup), passed in so that restoring never depends on the code that backs up. `profile` is
    what the archive holds (chrono_ci/profiles), which says what the restore replaces and how."""
    reporter.step(f"1. integrity test of {archive.path.name}")
    # A missing or wrong key stops here, before the target is even looked at.
    decrypt = settings.encryption.decrypt_for(archive.encrypted)
    streamed = streams_its_proof(archive.record) and not dry_run
    upfront = cheap_first(archive, reporter, decrypt) if streamed else integrity_first(archive, reporter, decrypt)
    expected = Expected.of(archive.record, upfront.contents)
    tables = expected.tables or {}

    reporter.step("2. plan")
    plan = plan_restore(settings, archive, target, profile)
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
    result = RestoreDocument(
        file=archive.path.name,
        target=plan.target.display(),
        dry_run=dry_run,
        source_database=plan.source_database,
        other_sessions=len(plan.sessions),
    )
    if dry_run:
        reporter.line("Dry run: the archive is valid and the restore would proceed. Nothing was changed.")
        result.ok = True
        return result

    reporter.step("3. confirmation")
    confirm(plan, yes, ask)
    reporter.ok("confirmed" + (" (--yes)" if yes else ""))

    reporter.step("4. safety backup of the target")
    safety = safety_backup(plan.target)
    result.safety_backup = safety

    reporter.step(
        "5. restore in one transaction, "
        + ("the archive's integrity and " if streamed else "")
        + "row counts proven before COMMIT"
    )
    preamble, proof = profile.preamble(plan.target, plan.server, plan.schemas, archive, sorted(tables))
    streamed_report = IntegrityReport(file=archive.path.name)
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
            integrity=streamed_report,
        )
    except (RestoreFailed, VerificationFailed) as failure:
        if streamed:
            streamed_report.print(reporter, verdict=False)
        failure.hint = f"{failure.hint} The safety backup {safety} holds the database as it was."
        raise
    if streamed:
        streamed_report.print(reporter, verdict=False)
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
    result.tables = dict(outcome.tables)
    result.warnings = list(outcome.warnings)
    result.ok = True
    return result
