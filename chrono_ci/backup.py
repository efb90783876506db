"""One backup, end to end: probe the server, choose pg_dump, stream the dump into the folder, prove the archive,
record it in the manifest, and only then rotate.

Nothing is committed unless every step before it succeeded: a failed run leaves no archive that looks valid,
leaves the manifest unchanged and deletes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chrono_ci import __version__
from chrono_ci.archive import ArchiveName, Manifest, reserve_archive_name
from chrono_ci.dump import DumpProcess
from chrono_ci.errors import ConfigError, VerificationFailed
from chrono_ci.pipeline import EXTENSIONS, ArchiveStream, make_compressor
from chrono_ci.postgres import DatabaseTarget, choose_pg_tools, probe_server
from chrono_ci.report import Reporter, human_size
from chrono_ci.retention import ArchiveRef, Decision, RetentionPolicy, plan_retention
from chrono_ci.scratch import restore_verify
from chrono_ci.settings import Settings
from chrono_ci.storage.local import LocalStorage, check_writable_dir
from chrono_ci.verify import IntegrityReport, check_archive

URL_SETTING = {"postgres": "DATABASE_URL", "supabase": "SUPABASE_DB_URL"}


@dataclass
class BackupResult:
    kind: str
    entry: dict[str, Any]
    path: Path
    check: IntegrityReport
    removed: list[Decision] = field(default_factory=list)


def target_for(settings: Settings, kind: str) -> DatabaseTarget:
    target = settings.database if kind == "postgres" else settings.supabase
    if target is None:
        name = URL_SETTING[kind]
        raise ConfigError(
            f"{name} is not set: there is no {kind} database to back up.",
            hint=f"Set {name}=postgresql://user:password@host:5432/database in the environment "
            "(or a CI secret), then run again.",
        )
    return target


def source_id(target: DatabaseTarget) -> str:
    """Which database an archive belongs to, for rotation: host, port and name (never the user or password)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}/{target.dbname}"


def run_backup(
    settings: Settings,
    kind: str,
    reporter: Reporter,
    *,
    series: str = "backup",
    target: DatabaseTarget | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackupResult:
    target = target or target_for(settings, kind)
    folder = settings.backup_dir
    storage = LocalStorage(folder)
    manifest = Manifest(folder)
    # A folder we cannot write, or a damaged manifest, stops us before we dump, not after.
    check_writable_dir(folder)
    manifest.read()

    reporter.info(f"connecting to {target.display()}")
    server = probe_server(target)
    tools = choose_pg_tools(server, settings.pg_bin_dir)
    reporter.ok(
        f"PostgreSQL {server.version} ({server.database} as {server.user}); "
        f"pg_dump {tools.version} from {tools.origin} ({tools.bin_dir})"
    )

    created = clock()
    extension = EXTENSIONS[settings.compression]
    name, marker = reserve_archive_name(folder, kind, series, created, extension)
    started = time.monotonic()
    try:
        dump = DumpProcess(tools, target)
        stream = ArchiveStream(
            dump,
            make_compressor(settings.compression, settings.compression_level),
            progress=lambda done: reporter.progress(done, f"dumping {target.dbname}"),
        )
        try:
            stored = storage.put(name, stream)  # type: ignore[arg-type]
        finally:
            stream.close()
    finally:
        marker.unlink(missing_ok=True)
    duration = time.monotonic() - started
    stats = stream.stats
    path = folder / name
    ratio = stats.raw_bytes / stored.size if stored.size else 1.0
    reporter.ok(
        f"archive written: {name} ({human_size(stored.size)} from {human_size(stats.raw_bytes)} of SQL, "
        f"ratio {ratio:.1f}x, {duration:.1f} s, {len(stats.tables)} tables, {sum(stats.tables.values())} rows)"
    )

    entry: dict[str, Any] = {
        "file": name,
        "kind": kind,
        "series": series,
        "database": target.dbname,
        "host": target.host,
        "port": target.port,
        "source": source_id(target),
        "created_at": created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "size_bytes": stored.size,
        "sha256": stored.metadata["sha256"],
        "raw_size_bytes": stats.raw_bytes,
        "raw_sha256": stats.raw_sha256,
        "compression": settings.compression,
        "compression_level": settings.compression_level if settings.compression != "none" else None,
        "format": "plain",
        "server_version": server.version,
        "pg_dump_version": tools.version,
        "duration_seconds": round(duration, 3),
        "tables": stats.tables,
        "verified": None,
        "tool_version": __version__,
    }

    check = check_archive(path, settings.compression, entry)
    if not check.ok:
        # An archive that fails its own check must not linger looking like a backup.
        path.unlink(missing_ok=True)
        failed = "; ".join(f"{c.name}: {c.detail}" for c in check.failed())
        raise VerificationFailed(
            f"The new archive {name} failed its integrity check and was removed: {failed}",
            hint="The disk or filesystem may be faulty; older backups were not touched. Run again.",
        )
    entry["verified"] = {"level": "check", "ok": True, "at": _now_iso(clock)}
    reporter.ok(f"integrity check passed: {', '.join(c.name for c in check.checks if c.ok)}")

    proof = None
    if settings.verify == "restore":
        reporter.info("restore-verification: restoring into a scratch database")
        proof = restore_verify(path, settings.compression, stats.tables, settings.scratch, settings.pg_bin_dir)
        entry["verified"] = {**proof.as_dict(), "at": _now_iso(clock)}
        (reporter.ok if proof.ok else reporter.fail)(f"restore-verification: {proof.summary()}")

    with manifest.locked() as entries:
        entries.append(entry)

    if proof is not None and not proof.ok:
        # The archive stays (nothing is ever lost) and says it is unproven; a backup that is not proven is a
        # failed run, so nothing is rotated away.
        raise VerificationFailed(
            f"{name} was written but did not pass restore-verification: {proof.summary()}.",
            hint="Its metadata entry records verified.ok = false. Older backups were not rotated away. "
            + ("Give --scratch-url a server with the missing extensions." if proof.missing_extensions else ""),
        )

    removed = rotate(folder, manifest, entry, RetentionPolicy(max_backups=settings.max_backups), clock(), reporter)
    return BackupResult(kind=kind, entry=entry, path=path, check=check, removed=removed)


def rotate(
    folder: Path,
    manifest: Manifest,
    newest: dict[str, Any],
    policy: RetentionPolicy,
    now: datetime,
    reporter: Reporter,
) -> list[Decision]:
    """Apply retention to the group of the archive just made: only files with our names, listed in the manifest."""
    with manifest.locked() as entries:
        refs = []
        for item in entries:
            parsed = ArchiveName.parse(item["file"])
            if parsed is None or item.get("kind") != newest["kind"] or item.get("source") != newest["source"]:
                continue
            if not (folder / item["file"]).is_file():
                continue
            refs.append(
                ArchiveRef(
                    key=item["file"],
                    kind=item["kind"],
                    database=item["source"],
                    created_at=_parse_time(item.get("created_at"), parsed.stamp),
                    series=item.get("series", parsed.series),
                )
            )
        plan = plan_retention(refs, policy, now, just_made=[newest["file"]])
        removed: list[Decision] = []
        gone: set[str] = set()
        for decision in plan.remove:
            try:
                (folder / decision.archive.key).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                reporter.warn(f"could not remove {decision.archive.key}: {exc.strerror}")
                continue
            gone.add(decision.archive.key)
            removed.append(decision)
        entries[:] = [item for item in entries if item["file"] not in gone]
    series = newest.get("series", "backup")
    kept = sum(1 for d in plan.keep if d.archive.series == series)
    if removed:
        reporter.ok(f"rotation ({policy.describe()}): removed {len(removed)}, kept {kept}")
        for decision in removed:
            reporter.info(f"removed {decision.archive.key} ({'; '.join(decision.reasons)})")
    else:
        reporter.ok(f"rotation ({policy.describe()}): nothing to remove, {kept} kept")
    return removed


def _parse_time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return fallback


def _now_iso(clock: Callable[[], datetime]) -> str:
    return clock().astimezone(UTC).isoformat().replace("+00:00", "Z")
