"""Retention applied: the pure decision of retention/policy.py carried out on the folder and on remote stores.

Only records chrono-ci believes are counted or deleted (chrono_ci/archive/provenance.py: our names, plausible fields
that match the bytes, and a valid signature when BACKUP_SIGNING_KEY is set). Every other archive of ours is reported,
never counted as a newer backup and never deleted; nothing is deleted in a dry run; every decision is reported
with its reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chrono_ci.archive.catalog import Vetted, in_folder, in_storage
from chrono_ci.archive.manifest import Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.signing import SigningKey
from chrono_ci.errors import ChronoError
from chrono_ci.report.console import Reporter
from chrono_ci.retention.policy import ArchiveRef, Decision, RetentionPolicy, plan_retention
from chrono_ci.storage.base import Storage


@dataclass
class Rotation:
    removed: list[Decision] = field(default_factory=list)
    rejected: list[Vetted] = field(default_factory=list)  # neither counted nor deleted


def rotate(
    folder: Path,
    manifest: Manifest,
    group: tuple[str, str],
    just_made: list[str],
    policy: RetentionPolicy,
    now: datetime,
    reporter: Reporter,
    *,
    key: SigningKey | None = None,
    dry_run: bool = False,
    report: bool = True,
) -> Rotation:
    """Apply retention to one (kind, source) group of the folder: only trusted records whose file is there.

    The folder is judged under the manifest's lock, so that a backup finishing meanwhile is counted; `report`
    False leaves the records not trusted to the caller to report (prune reports them once for every group).
    """
    kind, source = group
    with manifest.locked() as entries:
        judged = in_folder(folder, key, now, entries)
        refs = [ref for v in judged if (ref := archive_ref(v)) and v.size is not None and ref.group == group]
        plan = plan_retention(refs, policy, now, just_made=just_made)
        removed: list[Decision] = []
        for decision in plan.remove:
            if not dry_run:
                try:
                    (folder / decision.archive.key).unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    reporter.warn(f"could not remove {decision.archive.key}: {exc.strerror}")
                    continue
            removed.append(decision)
        if not dry_run:
            gone = {decision.archive.key for decision in removed}
            entries[:] = [item for item in entries if item["file"] not in gone]
    rejected = [v for v in judged if not v.trusted]
    if report:
        report_rejected(rejected, reporter)
    verb = "would remove" if dry_run else "removed"
    reporter.ok(f"rotation of {kind} {source} ({policy.describe()}): {verb} {len(removed)}, kept {len(plan.keep)}")
    for decision in removed:
        reporter.info(f"{verb} {decision.archive.key} ({'; '.join(decision.reasons)})")
    return Rotation(removed, rejected)


def rotate_remote(
    storage: Storage,
    group: tuple[str, str],
    just_made: str,
    policy: RetentionPolicy,
    now: datetime,
    reporter: Reporter,
    *,
    key: SigningKey | None = None,
    dry_run: bool = False,
    vetted: list[Vetted] | None = None,
) -> Rotation:
    """Retention on one (kind, source) group of a remote store; a failure is a warning, never fatal."""
    kind, source = group
    try:
        judged = vetted if vetted is not None else in_storage(storage, key, now)
        kept, removed = apply_remote_retention(
            judged, storage, policy, now, kind, source, just_made, dry_run=dry_run, warn=reporter.warn
        )
    except ChronoError as error:
        # The archives themselves are safe in the bucket; failing retention is reported, not fatal.
        reporter.warn(f"retention on {storage.url} failed: {error.message}")
        return Rotation()
    rejected = [v for v in judged if not v.trusted] if vetted is None else []
    report_rejected(rejected, reporter)
    locked = [d for d in kept if "protected by object lock" in d.reasons]
    verb = "would remove" if dry_run else "removed"
    reporter.ok(
        f"rotation on {storage.url} of {kind} {source} ({policy.describe()}): {verb} {len(removed)}, "
        f"kept {len(kept)}" + (f" ({len(locked)} under object lock)" if locked else "")
    )
    for decision in removed:
        reporter.info(f"{verb} {decision.archive.key} from {storage.url} ({'; '.join(decision.reasons)})")
    return Rotation(removed, rejected)


def archive_ref(vetted: Vetted) -> ArchiveRef | None:
    """What retention decides on: a trusted record only (chrono_ci/archive/provenance.py)."""
    record = vetted.record
    if not vetted.trusted or record is None or record.created is None:
        return None
    name = vetted.name
    return ArchiveRef(
        key=vetted.key, kind=name.kind, database=record.source, created_at=record.created, series=name.series
    )


def _groups(vetted: list[Vetted]) -> list[tuple[str, str]]:
    return sorted({ref.group for v in vetted if (ref := archive_ref(v)) is not None})


def report_rejected(rejected: list[Vetted], reporter: Reporter) -> None:
    for vetted in rejected:
        reporter.warn(
            f"{vetted.file} in {vetted.location} is not counted as a backup and is never deleted: "
            f"{vetted.verdict.problem}"
        )


def prune(
    policy: RetentionPolicy,
    reporter: Reporter,
    *,
    folder: Path | None = None,
    storage: Storage | None = None,
    key: SigningKey | None = None,
    dry_run: bool = False,
) -> Rotation:
    """`chrono-ci prune`: retention on every database's archives in the folder or in a remote store."""
    now = datetime.now(UTC)
    result = Rotation()
    if storage is not None:
        try:
            judged = in_storage(storage, key, now)
        except ChronoError as error:
            reporter.warn(f"retention on {storage.url} failed: {error.message}")
            return result
        result.rejected = [v for v in judged if not v.trusted]
        report_rejected(result.rejected, reporter)
        if not dry_run:
            abort_abandoned_uploads(storage, reporter)
        for group in _groups(judged):
            done = rotate_remote(storage, group, "", policy, now, reporter, key=key, dry_run=dry_run, vetted=judged)
            result.removed += done.removed
    elif folder is not None:
        manifest = Manifest(folder)
        judged = in_folder(folder, key, now)
        result.rejected = [v for v in judged if not v.trusted]
        report_rejected(result.rejected, reporter)
        for group in _groups(judged):
            done = rotate(folder, manifest, group, [], policy, now, reporter, key=key, dry_run=dry_run, report=False)
            result.removed += done.removed
    return result


# A multipart upload this old under our prefix, with an archive's name, is a killed run's: no backup's upload
# lasts that long without finishing (parts of several GB go up in minutes), and a younger one may be a run going.
ABANDONED_UPLOAD_AGE = timedelta(hours=1)


def abort_abandoned_uploads(storage: Storage, reporter: Reporter, now: datetime | None = None) -> None:
    """Abort the multipart uploads killed runs left under our prefix, whether a run recorded them or not: our
    archive names, started more than ABANDONED_UPLOAD_AGE ago. Parts are billed until aborted."""
    sweep = getattr(storage, "abort_stale_uploads", None)
    if sweep is None:
        return
    try:
        aborted: list[str] = sweep(ABANDONED_UPLOAD_AGE, named=lambda key: ArchiveName.parse(key) is not None, now=now)
    except ChronoError as error:
        reporter.warn(f"unfinished uploads in {storage.url} could not be listed or aborted: {error.message}")
        return
    if aborted:
        reporter.info(f"aborted {len(aborted)} unfinished upload(s) an interrupted run left: {', '.join(aborted)}")


def apply_remote_retention(
    vetted: list[Vetted],
    storage: Storage,
    policy: RetentionPolicy,
    now: datetime,
    kind: str,
    source: str,
    just_made: str,
    *,
    dry_run: bool = False,
    warn: Callable[[str], None] = lambda _message: None,
) -> tuple[list[Decision], list[Decision]]:
    """Retention on one remote group (kind, source) of the trusted objects in `vetted`. Objects under object
    lock are reported as kept."""
    from chrono_ci.storage.s3.errors import ObjectLocked

    refs = [ref for v in vetted if (ref := archive_ref(v)) and ref.group == (kind, source)]
    plan = plan_retention(refs, policy, now, just_made=[just_made])
    removed: list[Decision] = []
    kept = list(plan.keep)
    for decision in plan.remove:
        if dry_run:
            removed.append(decision)
            continue
        try:
            storage.delete(decision.archive.key)
        except ObjectLocked:
            kept.append(Decision(decision.archive, True, ("protected by object lock",)))
            continue
        except ChronoError as error:
            warn(f"could not remove {decision.archive.key} from {storage.url}: {error.message}")
            continue
        removed.append(decision)
    return kept, removed
