"""Are backups still happening? The newest good backup of each database, its age, size, proof and copies.

The failure people fear after "the backup does not restore" is "the backups stopped and nobody noticed": a
scheduled workflow switched off, a secret that expired, a dump that suddenly comes out empty. `build_status` is
a pure function of what the loaders found and a clock, so that every rule here is tested without waiting hours.

A backup is *good* when it passed its verification and at least one copy of it exists (the file in BACKUP_DIR,
or an upload that succeeded). Databases are told apart by kind and source (host:port/database), exactly as
rotation does, so several databases sharing one folder or one S3 prefix never mask each other.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from chrono_ci.report.console import human_size
from chrono_ci.timestamps import iso_z

TREND_LENGTH = 10
# Newest good backup below this share of the median of the ones before it: flagged as a probable silent
# failure (an emptied table, a role that lost its grants, the wrong database).
DROP_RATIO = 0.5

State = Literal["good", "failed", "missing", "unlisted", "untrusted"]
Level = Literal["error", "warning"]

# ------------------------------------------------------------------------------------------------ durations


def format_duration(delta: timedelta) -> str:
    """3d 2h, 5h 12m, 12m, 40s: two units at most, which is what a person reads in a log."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


# ------------------------------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class Copy:
    """One place an archive was meant to be: local (BACKUP_DIR), s3 or artifact."""

    target: str
    where: str  # a path, an s3:// URI or an artifact URL; never a secret
    ok: bool = True
    error: str | None = None


@dataclass(frozen=True)
class StatusArchive:
    file: str
    kind: str
    series: str  # "backup" | "safety"
    source: str  # host:port/database; "" when unknown (an archive no metadata describes)
    database: str | None
    created_at: datetime
    size_bytes: int
    raw_size_bytes: int | None = None
    # False: failed its check or restore-verification; None: not recorded where it was found (S3 metadata
    # carries no verification result).
    verified_ok: bool | None = None
    verified_level: str | None = None
    copies: tuple[Copy, ...] = ()
    listed: bool = True  # False: found with chrono-ci's name but no metadata says what it is
    # Its record as chrono_ci/archive/provenance.py judged it: the signature's state, and why it is not believed (None
    # when it is). A record not believed says nothing about backups: neither good, nor failed, nor fresh.
    signature: str = "none"
    distrust: str | None = None

    @property
    def state(self) -> State:
        if not self.listed:
            return "unlisted"
        if self.distrust is not None:
            return "untrusted"
        if self.verified_ok is False:
            return "failed"
        if any(copy.ok for copy in self.copies):
            return "good"
        uploads = [copy for copy in self.copies if copy.target != "local"]
        if uploads and not any(copy.target == "local" for copy in self.copies):
            return "failed"  # every upload failed and no local copy was kept
        return "missing"

    @property
    def problem(self) -> str:
        state = self.state
        if state == "failed" and self.verified_ok is False:
            return f"failed its {self.verified_level or 'integrity'} verification"
        if state == "failed":
            errors = "; ".join(f"{c.target}: {c.error or 'failed'}" for c in self.copies if not c.ok)
            return f"every upload failed ({errors})"
        if state == "missing":
            return "listed in the metadata, but its file is gone"
        if state == "unlisted":
            return "not described by any metadata"
        if state == "untrusted":
            return f"its record is not trusted: {self.distrust}"
        return ""

    def stored_in(self) -> list[str]:
        return [copy.target for copy in self.copies if copy.ok]


# --------------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Problem:
    level: Level
    message: str


@dataclass(frozen=True)
class Trend:
    measure: Literal["sql", "stored"]  # the SQL inside (raw_size_bytes) or the stored file
    points: tuple[tuple[StatusArchive, int], ...]  # oldest first, at most TREND_LENGTH
    median_before: float | None  # of every point but the newest
    drop: bool

    @property
    def change(self) -> float | None:
        """The newest point against the median of the previous ones: -0.62 is 62 % smaller."""
        if not self.points or not self.median_before:
            return None
        return self.points[-1][1] / self.median_before - 1


@dataclass(frozen=True)
class DatabaseStatus:
    kind: str
    source: str
    database: str | None
    newest: StatusArchive | None  # the newest good backup
    age: timedelta | None
    good: int
    failed: int  # failed or missing: no usable copy
    total_bytes: int  # every archive of this database that has a copy somewhere
    trend: Trend
    stale: bool  # older than max_age, or no good backup at all
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(problem.level == "error" for problem in self.problems)


@dataclass(frozen=True)
class StatusReport:
    now: datetime
    max_age: timedelta | None
    databases: tuple[DatabaseStatus, ...]
    stored_bytes: Mapping[str, int]  # per target: local, s3, artifact
    archives: int  # every archive seen, safety backups and unlisted ones included
    unlisted: int
    problems: tuple[Problem, ...] = field(default_factory=tuple)  # not about one database
    untrusted: int = 0  # records not believed (see chrono_ci/archive/provenance.py), counted in no database

    @property
    def ok(self) -> bool:
        return not any(p.level == "error" for p in self.problems) and all(d.ok for d in self.databases)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "now": iso_z(self.now),
            "max_age_seconds": int(self.max_age.total_seconds()) if self.max_age is not None else None,
            "archives": self.archives,
            "unlisted": self.unlisted,
            "untrusted": self.untrusted,
            "stored_bytes": dict(self.stored_bytes),
            "problems": [_problem_dict(p) for p in self.problems],
            "databases": [_database_dict(d) for d in self.databases],
        }


def build_status(archives: list[StatusArchive], now: datetime, max_age: timedelta | None) -> StatusReport:
    """The status of every database found in `archives`, as of `now`. Pure: no clock, no I/O."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    groups: dict[tuple[str, str], list[StatusArchive]] = {}
    for archive in archives:
        if archive.series == "backup" and archive.state not in ("unlisted", "untrusted"):
            groups.setdefault((archive.kind, archive.source), []).append(archive)
    databases = tuple(_database_status(key, members, now, max_age) for key, members in sorted(groups.items()))

    stored: dict[str, int] = {}
    for archive in archives:
        for target in dict.fromkeys(archive.stored_in()):
            stored[target] = stored.get(target, 0) + archive.size_bytes
    problems: list[Problem] = []
    if not databases:
        problems.append(Problem("error", "no backup found: there is no good backup of any database"))
    untrusted = [archive for archive in archives if archive.state == "untrusted"]
    for archive in untrusted:
        problems.append(
            Problem("warning", f"{archive.file} is not counted: its record is not trusted ({archive.distrust})")
        )
    unlisted = sum(1 for archive in archives if not archive.listed)
    return StatusReport(
        now, max_age, databases, stored, len(archives), unlisted, tuple(problems), untrusted=len(untrusted)
    )


def _database_status(
    key: tuple[str, str], members: list[StatusArchive], now: datetime, max_age: timedelta | None
) -> DatabaseStatus:
    kind, source = key
    ordered = sorted(members, key=lambda a: (a.created_at, a.file))
    good = [a for a in ordered if a.state == "good"]
    newest = good[-1] if good else None
    problems: list[Problem] = []
    age: timedelta | None = None
    if newest is None:
        last = ordered[-1]
        problems.append(
            Problem(
                "error",
                f"no good backup: none of its {len(ordered)} recorded backup(s) is usable; newest {last.file}: "
                f"{last.problem}",
            )
        )
    else:
        # A clock that runs behind the one that stamped the backup must not produce a negative age.
        age = max(now - newest.created_at, timedelta(0))
        if max_age is not None and age > max_age:
            problems.append(
                Problem(
                    "error",
                    f"newest good backup is {format_duration(age)} old ({newest.file}), more than the allowed "
                    f"{format_duration(max_age)}",
                )
            )
        for copy in newest.copies:
            if not copy.ok:
                problems.append(
                    Problem(
                        "warning", f"{newest.file}: its {copy.target} copy failed ({copy.error or 'unknown error'})"
                    )
                )
    after = [a for a in ordered if newest is None or (a.created_at, a.file) > (newest.created_at, newest.file)]
    if newest is not None and after:
        last = after[-1]
        problems.append(
            Problem(
                "warning",
                f"{len(after)} backup(s) after the newest good one are not usable; newest {last.file}: {last.problem}",
            )
        )
    trend = _trend(good)
    if trend.drop:
        measure = "SQL size" if trend.measure == "sql" else "size"
        problems.append(
            Problem(
                "warning",
                f"size drop: the newest good backup's {measure} is {human_size(trend.points[-1][1])}, less than "
                f"half the median ({human_size(trend.median_before or 0)}) of the {len(trend.points) - 1} before "
                "it; check that the database was not emptied or truncated",
            )
        )
    database = next((a.database for a in reversed(ordered) if a.database), None)
    total = sum(a.size_bytes for a in ordered if a.stored_in())
    failed = sum(1 for a in ordered if a.state in ("failed", "missing"))
    stale = newest is None or (max_age is not None and age is not None and age > max_age)
    return DatabaseStatus(kind, source, database, newest, age, len(good), failed, total, trend, stale, tuple(problems))


def _trend(good: list[StatusArchive]) -> Trend:
    window = good[-TREND_LENGTH:]
    # The SQL size does not move when the compression or its level changes; the stored size does, and a
    # switch from gzip to zstd would look like a drop.
    use_sql = bool(window) and all(a.raw_size_bytes is not None for a in window)
    points = tuple(
        (a, int(a.raw_size_bytes if use_sql and a.raw_size_bytes is not None else a.size_bytes)) for a in window
    )
    previous = [size for _, size in points[:-1]]
    median = float(statistics.median(previous)) if previous else None
    drop = median is not None and points[-1][1] < DROP_RATIO * median
    return Trend("sql" if use_sql else "stored", points, median, drop)


# -------------------------------------------------------------------------------------------------- helpers


def _problem_dict(problem: Problem) -> dict[str, str]:
    return {"level": problem.level, "message": problem.message}


def _archive_dict(archive: StatusArchive) -> dict[str, Any]:
    return {
        "file": archive.file,
        "created_at": iso_z(archive.created_at),
        "size_bytes": archive.size_bytes,
        "raw_size_bytes": archive.raw_size_bytes,
        "verified": None
        if archive.verified_ok is None
        else {"level": archive.verified_level, "ok": archive.verified_ok},
        "signature": archive.signature,
        "stored": [{"target": c.target, "where": c.where, "ok": c.ok, "error": c.error} for c in archive.copies],
    }


def _database_dict(status: DatabaseStatus) -> dict[str, Any]:
    return {
        "kind": status.kind,
        "source": status.source,
        "database": status.database,
        "ok": status.ok,
        "stale": status.stale,
        "age_seconds": int(status.age.total_seconds()) if status.age is not None else None,
        "newest": _archive_dict(status.newest) if status.newest is not None else None,
        "good": status.good,
        "failed": status.failed,
        "total_bytes": status.total_bytes,
        "trend": {
            "measure": status.trend.measure,
            "sizes": [
                {"file": a.file, "created_at": iso_z(a.created_at), "bytes": size} for a, size in status.trend.points
            ],
            "median_before": status.trend.median_before,
            "change": status.trend.change,
            "drop": status.trend.drop,
        },
        "problems": [_problem_dict(p) for p in status.problems],
    }
