"""Which archives to keep and which to remove, and why: a pure decision with no I/O and no clock.

The caller lists the archives this tool wrote, passes `now`, applies the plan only after the new backup
succeeded, and deletes nothing but what `remove` names (pitfalls 13). Keeping the decision pure lets
`--dry-run` print exactly what a real run would do, and lets the tests pin every rule to a fixed date.

Rules combine as a union, as in restic's `forget`: an archive survives if any rule wants it. Each
(kind, database, series) group is decided on its own, so a burst of safety backups before a restore never
pushes ordinary backups out, and one database never uses up another's slots.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chrono_ci.errors import ConfigError

SERIES_BACKUP = "backup"
SERIES_SAFETY = "safety"


@dataclass(frozen=True)
class ArchiveRef:
    key: str  # file name / object key
    kind: str  # "postgres" | "supabase"
    database: str
    created_at: datetime  # aware, UTC
    series: str = SERIES_BACKUP  # each series rotates separately
    protected: bool = False  # e.g. under S3 object lock: kept and reported, never removed

    @property
    def group(self) -> tuple[str, str]:
        """What rotates together: one kind of one database."""
        return self.kind, self.database


@dataclass(frozen=True)
class RetentionPolicy:
    max_backups: int | None = 30
    retention_days: int | None = None
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def __post_init__(self) -> None:
        _check_count("max_backups", self.max_backups, minimum=1, optional=True)
        _check_count("retention_days", self.retention_days, minimum=1, optional=True)
        _check_count("keep_daily", self.keep_daily, minimum=0, optional=False)
        _check_count("keep_weekly", self.keep_weekly, minimum=0, optional=False)
        _check_count("keep_monthly", self.keep_monthly, minimum=0, optional=False)

    @property
    def has_rules(self) -> bool:
        """False when no rule is set: then nothing is ever removed, since deleting needs a stated policy."""
        return (
            self.max_backups is not None
            or self.retention_days is not None
            or self.keep_daily > 0
            or self.keep_weekly > 0
            or self.keep_monthly > 0
        )

    def describe(self) -> str:
        parts: list[str] = []
        if self.max_backups is not None:
            parts.append(f"newest {self.max_backups}")
        if self.retention_days is not None:
            parts.append(_days(self.retention_days))
        parts.extend(f"{count} {label}" for count, label, _ in _calendar_rules(self))
        if not parts:
            return "keep everything (no retention rule set)"
        if len(parts) == 1 and self.max_backups is not None:
            return f"newest {self.max_backups} per database"
        return ", ".join(parts)


@dataclass(frozen=True)
class Decision:
    archive: ArchiveRef
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RetentionPlan:
    keep: tuple[Decision, ...]
    remove: tuple[Decision, ...]


def plan_retention(
    archives: Sequence[ArchiveRef],
    policy: RetentionPolicy,
    now: datetime,
    just_made: Collection[str] = (),
) -> RetentionPlan:
    """Decide every archive; `keep` and `remove` are each sorted newest first."""
    _require_aware(now, "now")
    # A bare string is a Collection[str] of its characters, so mypy cannot catch it; left alone it would
    # silently fail to protect the backup just made.
    if isinstance(just_made, str):
        raise TypeError("just_made must be a collection of keys, not a single string")
    just_made_keys = frozenset(just_made)

    groups: dict[tuple[str, str, str], list[ArchiveRef]] = {}
    seen: set[str] = set()
    for archive in archives:
        _require_aware(archive.created_at, f"created_at of {archive.key!r}")
        # One key listed twice could be kept by one decision and deleted by the other.
        if archive.key in seen:
            raise ValueError(f"archive key {archive.key!r} is listed more than once")
        seen.add(archive.key)
        groups.setdefault((archive.kind, archive.database, archive.series), []).append(archive)

    decisions: list[Decision] = []
    for members in groups.values():
        decisions.extend(_decide_group(members, policy, now, just_made_keys))
    decisions.sort(key=lambda decision: _recency(decision.archive), reverse=True)
    return RetentionPlan(
        keep=tuple(d for d in decisions if d.keep),
        remove=tuple(d for d in decisions if not d.keep),
    )


def _decide_group(
    members: list[ArchiveRef], policy: RetentionPolicy, now: datetime, just_made: frozenset[str]
) -> list[Decision]:
    newest_first = sorted(members, key=_recency, reverse=True)
    # A future date means a skewed clock somewhere. Such an archive is kept but takes part in no rule:
    # otherwise it would hold a "newest N" slot and the "newest archive" title until that date arrives,
    # and every real backup could rotate out meanwhile.
    ruled = [a for a in newest_first if a.created_at <= now]
    reasons: dict[str, list[str]] = {a.key: [] for a in newest_first}

    if ruled:
        reasons[ruled[0].key].append("newest archive")
    for archive in newest_first:
        if archive.key in just_made:
            reasons[archive.key].append("just made")
        if archive.protected:
            reasons[archive.key].append("protected by object lock")
        if archive.created_at > now:
            reasons[archive.key].append("dated in the future")

    if not policy.has_rules:
        for archive in newest_first:
            reasons[archive.key].append("no retention rule set")
    else:
        if policy.max_backups is not None:
            for archive in ruled[: policy.max_backups]:
                reasons[archive.key].append(f"among newest {policy.max_backups}")
        if policy.retention_days is not None:
            cutoff = now - timedelta(days=policy.retention_days)
            for archive in ruled:
                if archive.created_at > cutoff:
                    reasons[archive.key].append(f"younger than {_days(policy.retention_days)}")
        for count, label, bucket in _calendar_rules(policy):
            for archive, period in _newest_per_period(ruled, bucket, count):
                reasons[archive.key].append(f"{label} {period}")

    removal = (_removal_reason(policy),)
    return [
        Decision(archive=a, keep=True, reasons=tuple(reasons[a.key]))
        if reasons[a.key]
        else Decision(archive=a, keep=False, reasons=removal)
        for a in newest_first
    ]


def _calendar_rules(policy: RetentionPolicy) -> list[tuple[int, str, Callable[[datetime], str]]]:
    rules = (
        (policy.keep_daily, "daily", _day_bucket),
        (policy.keep_weekly, "weekly", _week_bucket),
        (policy.keep_monthly, "monthly", _month_bucket),
    )
    return [rule for rule in rules if rule[0] > 0]


def _newest_per_period(
    newest_first: list[ArchiveRef], bucket: Callable[[datetime], str], count: int
) -> list[tuple[ArchiveRef, str]]:
    """The newest archive of each of the `count` most recent periods that have archives (restic's rule).

    Periods without archives do not use up the count, so a runner that was down for a week still keeps
    `count` distinct days of history rather than fewer.
    """
    picked: list[tuple[ArchiveRef, str]] = []
    previous: str | None = None
    for archive in newest_first:
        if len(picked) == count:
            break
        period = bucket(archive.created_at)
        # Newest first, so periods only ever step backwards: a change means the first of a new period.
        if period != previous:
            picked.append((archive, period))
            previous = period
    return picked


def _removal_reason(policy: RetentionPolicy) -> str:
    calendar = _calendar_rules(policy)
    if policy.max_backups is not None:
        lead = f"older than the newest {policy.max_backups}"
        others = policy.retention_days is not None or bool(calendar)
    elif policy.retention_days is not None:
        lead = f"older than {_days(policy.retention_days)}"
        others = bool(calendar)
    else:
        lead = "outside " + ", ".join(f"{count} {label}" for count, label, _ in calendar)
        others = False
    return f"{lead} and outside every other rule" if others else lead


def _recency(archive: ArchiveRef) -> tuple[datetime, str]:
    # Never by name alone: names sort wrongly across formats and widths (pitfalls 13). The key only
    # settles equal timestamps, so the order is total and the plan does not depend on input order.
    return (archive.created_at, archive.key)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _day_bucket(moment: datetime) -> str:
    return _utc(moment).date().isoformat()


def _week_bucket(moment: datetime) -> str:
    # ISO (year, week), not the calendar year: 2026-12-31 and 2027-01-01 are both in 2026-W53.
    iso = _utc(moment).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def _month_bucket(moment: datetime) -> str:
    utc = _utc(moment)
    return f"{utc.year}-{utc.month:02d}"


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"


def _require_aware(moment: datetime, what: str) -> None:
    # Comparing naive and aware datetimes raises deep inside sorting; a naive one taken as UTC could
    # be hours off and delete the wrong day's archive.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {moment.isoformat()}")


def _check_count(name: str, value: object, *, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    # bool is an int subclass, and True would otherwise pass as 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(
            f"{name} must be a whole number, got {value!r}",
            f"Set {name} to a whole number of at least {minimum}.",
        )
    if value < minimum:
        hint = (
            f"Set {name} to 0 to turn the rule off, or to a positive number."
            if minimum == 0
            else f"Set {name} to 1 or more; the newest archive of each database is kept whatever it says."
        )
        raise ConfigError(f"{name} must be at least {minimum}, got {value}", hint)
