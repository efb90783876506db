"""Backing up several databases in one run (`backup all`): each kind in turn, going on after a failure, and the
summary of what was made and what is in the folder."""

from __future__ import annotations

from chrono_ci.archive.manifest import Manifest
from chrono_ci.config.settings import Settings
from chrono_ci.errors import ChronoError
from chrono_ci.jobs.backup import BackupResult, run_backup
from chrono_ci.profiles import profile_for
from chrono_ci.report.console import Reporter, human_size


def run_kinds(
    settings: Settings,
    kinds: list[str],
    results: list[BackupResult],
    failures: list[tuple[str, ChronoError]],
    reporter: Reporter,
) -> None:
    # `backup all` skips a kind whose profile is optional and whose database is not configured: only the others
    # are backed up. Asked for alone, every kind needs its database.
    going = [
        kind
        for kind in kinds
        if len(kinds) == 1 or not profile_for(kind).optional or profile_for(kind).configured(settings) is not None
    ]
    for kind in kinds:
        if kind not in going:
            reporter.step(f"{kind}: skipped")
            reporter.info(f"{profile_for(kind).url_setting} is not set: no {kind} database to back up (not an error)")
            continue
        reporter.step(f"{kind} backup")
        # Artifact names are unique per workflow run: two archives in one run need two names. One database keeps
        # the name it was given.
        artifact_kind = kind if len(going) > 1 else None
        try:
            results.append(
                run_backup(settings, kind, reporter, artifact_name=settings.artifact_name, artifact_kind=artifact_kind)
            )
        except ChronoError as error:
            if len(kinds) == 1:
                raise
            reporter.fail(f"{kind} backup failed")
            reporter.error(error)
            failures.append((kind, error))


def print_summary(
    settings: Settings,
    results: list[BackupResult],
    failures: list[tuple[str, ChronoError]],
    reporter: Reporter,
) -> None:
    reporter.step("summary")
    for result in results:
        reporter.ok(f"{result.kind}: {result.record.file} ({human_size(result.record.size_bytes or 0)}), verified")
    for kind, error in failures:
        reporter.fail(f"{kind}: {error.message.splitlines()[0]}")
    try:
        records = Manifest(settings.backup_dir).records()
    except ChronoError:
        records = []
    present = [record for record in records if (settings.backup_dir / record.file).is_file()]
    total = sum(record.size_bytes or 0 for record in present)
    reporter.info(f"{len(present)} archive(s) in {settings.backup_dir}, {human_size(total)} in all")
    if failures:
        reporter.line(f"{len(failures)} of {len(failures) + len(results)} backup(s) FAILED")
    else:
        reporter.line(f"All {len(results)} backup(s) succeeded and were verified.")
