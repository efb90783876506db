"""`chrono-ci status`: the newest good backup of each database, its age, size, proof and copies (exit 7 if
stale)."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Annotated

import typer

from chrono_ci.cli.command import State, cli_values, guarded, origin_of, s3_storage
from chrono_ci.cli.options import BackupDir, From, JsonOutput, S3Url
from chrono_ci.config.settings import resolve_settings
from chrono_ci.errors import ExitCode
from chrono_ci.report.console import Reporter, human_size
from chrono_ci.report.results import StatusDocument

if TYPE_CHECKING:  # loaded by `status` itself, not by every command that starts the app
    from chrono_ci.jobs.status import Copy, StatusReport


def print_status(report: StatusReport, reporter: Reporter, location: str) -> None:
    """The human report: one block per database, then the totals and a one-line verdict."""
    from chrono_ci.jobs.status import format_duration

    limit = f" (max age {format_duration(report.max_age)})" if report.max_age is not None else ""
    reporter.step(f"status of {location}{limit}")
    for status in report.databases:
        name = status.database or "?"
        reporter.step(f"{status.kind} {name} ({status.source or 'unknown source'})")
        newest = status.newest
        if newest is not None and status.age is not None:
            stamp = newest.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
            line = f"newest good backup: {newest.file}, {format_duration(status.age)} ago ({stamp} UTC)"
            (reporter.info if status.stale else reporter.ok)(line)
            sql = f" ({human_size(newest.raw_size_bytes)} of SQL)" if newest.raw_size_bytes is not None else ""
            if newest.verified_ok is None:
                proof = "not recorded here"
            else:
                proof = f"{newest.verified_level or '?'} {'ok' if newest.verified_ok else 'FAILED'}"
            record = {"valid": "signed", "unchecked": "signed (no key to check it)"}.get(newest.signature, "unsigned")
            reporter.info(f"size {human_size(newest.size_bytes)}{sql}; verified: {proof}; record: {record}")
            reporter.info("stored: " + ", ".join(_copy_text(copy) for copy in newest.copies))
        reporter.info(f"{status.good} good, {status.failed} failed, {human_size(status.total_bytes)} stored")
        if len(status.trend.points) > 1:
            measure = "SQL size" if status.trend.measure == "sql" else "size"
            sizes = " ".join(human_size(size).replace(" ", "") for _, size in status.trend.points)
            change = status.trend.change
            against = f" ({change:+.0%} against the median before)" if change is not None else ""
            reporter.info(f"trend ({measure}, last {len(status.trend.points)}, oldest first): {sizes}{against}")
        for problem in status.problems:
            (reporter.fail if problem.level == "error" else reporter.warn)(problem.message)
    reporter.step("summary")
    for problem in report.problems:
        (reporter.fail if problem.level == "error" else reporter.warn)(problem.message)
    used = "; ".join(f"{target}: {human_size(size)}" for target, size in sorted(report.stored_bytes.items()))
    reporter.info(f"{report.archives} archive(s), safety backups included; {used or 'nothing stored'}")
    if report.unlisted:
        reporter.info(f"{report.unlisted} file(s) with chrono-ci names are not described by any metadata (ignored)")
    warnings = sum(1 for d in report.databases for p in d.problems if p.level == "warning")
    tail = f", {warnings} warning(s)" if warnings else ""
    count = len(report.databases)
    if not report.ok:
        bad = sum(1 for d in report.databases if not d.ok)
        reporter.line(
            f"{bad} of {count} database(s) FAILED the status check{tail}."
            if count
            else f"No good backup found in {location}."
        )
    elif report.max_age is not None:
        reporter.line(
            f"All {count} database(s) have a good backup younger than {format_duration(report.max_age)}{tail}."
        )
    else:
        reporter.line(f"All {count} database(s) have a good backup (age not checked: no --max-age){tail}.")


def _copy_text(copy: Copy) -> str:
    text = copy.target if copy.target == "local" else f"{copy.target} {copy.where}"
    return text if copy.ok else f"{text} FAILED ({copy.error or 'unknown error'})"


def status(
    ctx: typer.Context,
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            metavar="DURATION",
            help="Exit 7 when any database's newest good backup is older than this: 26h, 90m, 7d, 1d12h.",
        ),
    ] = None,
    where: From = "local",
    backup_dir: BackupDir = None,
    s3_url: S3Url = None,
    json_output: JsonOutput = False,
) -> None:
    """Newest good backup of each database: age, size, verification, copies, size trend (exit 7 if stale)."""
    cli = cli_values(ctx, {"backup_dir": backup_dir, "s3_url": s3_url})

    def body(reporter: Reporter) -> int:
        from datetime import UTC, datetime

        from chrono_ci.config.parsers import parse_duration
        from chrono_ci.jobs.status import build_status
        from chrono_ci.jobs.status_loaders import from_folder, from_s3

        limit = parse_duration(max_age, "--max-age") if max_age is not None else None
        origin = origin_of(where)
        settings = resolve_settings(cli)
        reporter.add_secrets(settings.secrets())
        if origin == "s3":
            storage = s3_storage(settings)
            location, archives = storage.url, from_s3(storage, settings.signing_key)
        else:
            folder = settings.backup_dir
            location, archives = str(folder), from_folder(folder, settings.signing_key)
        report = build_status(archives, datetime.now(UTC), limit)
        print_status(report, reporter, location)
        if State.json_mode:
            document = StatusDocument(ok=report.ok, origin=origin, location=location, report=report.as_dict())
            reporter.emit_json(document.to_json())
        return 0 if report.ok else int(ExitCode.VERIFY)

    guarded(body, json_output, StatusDocument)
