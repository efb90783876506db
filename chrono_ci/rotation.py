"""Retention applied: the pure decision of retention.py carried out on the folder and on remote stores.

Only archives chrono-ci wrote are considered (its names, and its manifest entries or object metadata), and
nothing is deleted in a dry run; every decision is reported with its reasons.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from chrono_ci.archive import ArchiveName, Manifest
from chrono_ci.errors import ChronoError
from chrono_ci.report import Reporter
from chrono_ci.retention import ArchiveRef, Decision, RetentionPolicy, plan_retention
from chrono_ci.storage.base import Storage
from chrono_ci.upload import apply_remote_retention, remote_archives


def rotate(
    folder: Path,
    manifest: Manifest,
    group: tuple[str, str],
    just_made: list[str],
    policy: RetentionPolicy,
    now: datetime,
    reporter: Reporter,
    *,
    dry_run: bool = False,
) -> list[Decision]:
    """Apply retention to one (kind, source) group: only files with our names that the manifest lists."""
    kind, source = group
    with manifest.locked() as entries:
        refs = []
        for item in entries:
            parsed = ArchiveName.parse(item["file"])
            if parsed is None or item.get("kind") != kind or item.get("source") != source:
                continue
            if not (folder / item["file"]).is_file():
                continue
            refs.append(
                ArchiveRef(
                    key=item["file"],
                    kind=kind,
                    database=source,
                    created_at=_parse_time(item.get("created_at"), parsed.stamp),
                    series=item.get("series", parsed.series),
                )
            )
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
    verb = "would remove" if dry_run else "removed"
    reporter.ok(f"rotation of {kind} {source} ({policy.describe()}): {verb} {len(removed)}, kept {len(plan.keep)}")
    for decision in removed:
        reporter.info(f"{verb} {decision.archive.key} ({'; '.join(decision.reasons)})")
    return removed


def rotate_remote(
    storage: Storage,
    group: tuple[str, str],
    just_made: str,
    policy: RetentionPolicy,
    now: datetime,
    reporter: Reporter,
    *,
    dry_run: bool = False,
) -> list[Decision]:
    """Retention on one (kind, source) group of a remote store; a failure is a warning, never fatal."""
    kind, source = group
    try:
        kept, removed = apply_remote_retention(
            storage, policy, now, kind, source, just_made, dry_run=dry_run, warn=reporter.warn
        )
        sweep = getattr(storage, "abort_stale_uploads", None)
        if sweep is not None and not dry_run:
            sweep()
    except ChronoError as error:
        # The archives themselves are safe in the bucket; failing retention is reported, not fatal.
        reporter.warn(f"retention on {storage.url} failed: {error.message}")
        return []
    locked = [d for d in kept if "protected by object lock" in d.reasons]
    verb = "would remove" if dry_run else "removed"
    reporter.ok(
        f"rotation on {storage.url} of {kind} {source} ({policy.describe()}): {verb} {len(removed)}, "
        f"kept {len(kept)}" + (f" ({len(locked)} under object lock)" if locked else "")
    )
    for decision in removed:
        reporter.info(f"{verb} {decision.archive.key} from {storage.url} ({'; '.join(decision.reasons)})")
    return removed


def prune(
    policy: RetentionPolicy,
    reporter: Reporter,
    *,
    folder: Path | None = None,
    storage: Storage | None = None,
    dry_run: bool = False,
) -> list[str]:
    """`chrono-ci prune`: retention on every database's archives in the folder or in a remote store."""
    now = datetime.now(UTC)
    removed: list[Decision] = []
    if storage is not None:
        groups = sorted({(ref.kind, ref.database) for _, ref in remote_archives(storage)})
        for group in groups:
            removed += rotate_remote(storage, group, "", policy, now, reporter, dry_run=dry_run)
    elif folder is not None:
        manifest = Manifest(folder)
        for group in sorted({(str(e.get("kind")), str(e.get("source"))) for e in manifest.read()}):
            removed += rotate(folder, manifest, group, [], policy, now, reporter, dry_run=dry_run)
    return [decision.archive.key for decision in removed]


def _parse_time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return fallback
