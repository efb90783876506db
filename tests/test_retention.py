"""Retention decisions against hand-checked expectations.

Every expected set below is written out by hand, with the reasoning beside it, rather than computed by a
second copy of the algorithm: a shared mistake would otherwise pass unnoticed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chrono_ci.errors import ConfigError, ExitCode
from chrono_ci.retention.policy import ArchiveRef, Decision, RetentionPlan, RetentionPolicy, plan_retention

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, ISO week 2026-W48


def at(text: str) -> datetime:
    """'2026-11-24 20:00' or '2026-11-24 20:00:05' as an aware UTC datetime."""
    pattern = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, pattern).replace(tzinfo=UTC)


def pg(
    created: str,
    *,
    kind: str = "postgres",
    database: str = "app",
    series: str = "backup",
    protected: bool = False,
) -> ArchiveRef:
    """An archive named the way chrono-ci names them, so keys look like the real thing."""
    moment = at(created)
    prefix = "safety" if series == "safety" else f"{kind}_backup"
    key = f"{database}/{prefix}_{moment:%Y-%m-%d_%H-%M-%S}.sql.gz"
    return ArchiveRef(key, kind, database, moment, series=series, protected=protected)


def named(key: str, created: datetime) -> ArchiveRef:
    return ArchiveRef(key, "postgres", "app", created)


def keys(decisions: tuple[Decision, ...]) -> list[str]:
    return [d.archive.key for d in decisions]


def reasons_by_key(plan: RetentionPlan) -> dict[str, tuple[str, ...]]:
    return {d.archive.key: d.reasons for d in (*plan.keep, *plan.remove)}


def assert_partition(plan: RetentionPlan, archives: list[ArchiveRef]) -> None:
    """Every archive is decided exactly once, and the keep flag matches the side it is on."""
    decided = keys(plan.keep) + keys(plan.remove)
    assert sorted(decided) == sorted(a.key for a in archives)
    assert all(d.keep for d in plan.keep)
    assert not any(d.keep for d in plan.remove)
    assert all(d.reasons for d in (*plan.keep, *plan.remove))


@dataclass
class Case:
    archives: list[ArchiveRef]
    policy: RetentionPolicy
    keep: list[str]  # newest first, as the plan must order them
    remove: list[str]
    just_made: tuple[str, ...] = ()
    now: datetime = NOW
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)  # only the ones worth pinning


def k(
    created: str,
    *,
    kind: str = "postgres",
    database: str = "app",
    series: str = "backup",
    protected: bool = False,
) -> str:
    return pg(created, kind=kind, database=database, series=series, protected=protected).key


CASES = {
    # The guide's "Test 4": MAX_BACKUPS=3, five backups a second apart, three remain.
    "guide-test-4": Case(
        archives=[pg(f"2026-11-25 10:00:0{i}") for i in range(1, 6)],
        policy=RetentionPolicy(max_backups=3),
        keep=[k("2026-11-25 10:00:05"), k("2026-11-25 10:00:04"), k("2026-11-25 10:00:03")],
        remove=[k("2026-11-25 10:00:02"), k("2026-11-25 10:00:01")],
        reasons={
            k("2026-11-25 10:00:05"): ("newest archive", "among newest 3"),
            k("2026-11-25 10:00:04"): ("among newest 3",),
            k("2026-11-25 10:00:02"): ("older than the newest 3",),
        },
    ),
    # Names that sort the wrong way round: as text "_9" > "_11" > "_10", so ordering by name would keep
    # the oldest one (pitfalls 13).
    "ordered-by-time-not-name": Case(
        archives=[
            named("postgres_backup_9.sql.gz", at("2026-11-20 10:00")),
            named("postgres_backup_10.sql.gz", at("2026-11-21 10:00")),
            named("postgres_backup_11.sql.gz", at("2026-11-22 10:00")),
        ],
        policy=RetentionPolicy(max_backups=1),
        keep=["postgres_backup_11.sql.gz"],
        remove=["postgres_backup_10.sql.gz", "postgres_backup_9.sql.gz"],
    ),
    # Equal timestamps: the key settles it, the one sorting last counting as newer; "c" is older than both.
    "ties-on-created-at": Case(
        archives=[
            named("a.sql.gz", at("2026-11-25 10:00")),
            named("c.sql.gz", at("2026-11-25 09:00")),
            named("b.sql.gz", at("2026-11-25 10:00")),
        ],
        policy=RetentionPolicy(max_backups=1),
        keep=["b.sql.gz"],
        remove=["a.sql.gz", "c.sql.gz"],
        reasons={"b.sql.gz": ("newest archive", "among newest 1")},
    ),
    # max 1 over four groups of two: each group keeps its own newest. Were they pooled, only the newest of
    # all eight (crm at 11:00) would survive.
    "groups-kept-apart": Case(
        archives=[
            pg("2026-11-25 09:00", database="app"),
            pg("2026-11-25 10:00", database="app"),
            pg("2026-11-25 10:00", database="crm"),
            pg("2026-11-25 11:00", database="crm"),
            pg("2026-11-24 09:00", kind="supabase", database="app"),
            pg("2026-11-24 10:00", kind="supabase", database="app"),
            # Safety backups taken right before a restore are the newest of all, yet must not push
            # the ordinary app backup out.
            pg("2026-11-25 10:30", series="safety"),
            pg("2026-11-25 10:45", series="safety"),
        ],
        policy=RetentionPolicy(max_backups=1),
        keep=[
            k("2026-11-25 11:00", database="crm"),
            k("2026-11-25 10:45", series="safety"),
            k("2026-11-25 10:00", database="app"),
            k("2026-11-24 10:00", kind="supabase", database="app"),
        ],
        remove=[
            k("2026-11-25 10:30", series="safety"),
            k("2026-11-25 10:00", database="crm"),
            k("2026-11-25 09:00", database="app"),
            k("2026-11-24 09:00", kind="supabase", database="app"),
        ],
    ),
    # Every archive is past 7 days (backups stopped a month ago): the age rule alone would leave nothing.
    "newest-kept-despite-age-rule": Case(
        archives=[pg("2026-10-20 02:00"), pg("2026-10-21 02:00"), pg("2026-10-22 02:00")],
        policy=RetentionPolicy(max_backups=None, retention_days=7),
        keep=[k("2026-10-22 02:00")],
        remove=[k("2026-10-21 02:00"), k("2026-10-20 02:00")],
        reasons={
            k("2026-10-22 02:00"): ("newest archive",),
            k("2026-10-21 02:00"): ("older than 7 days",),
        },
    ),
    # Ages 1 day, 6 days 23 hours, exactly 7 days, 8 days: exactly 7 days is not "younger than 7 days".
    "age-rule": Case(
        archives=[
            pg("2026-11-24 12:00"),
            pg("2026-11-18 13:00"),
            pg("2026-11-18 12:00"),
            pg("2026-11-17 12:00"),
        ],
        policy=RetentionPolicy(max_backups=None, retention_days=7),
        keep=[k("2026-11-24 12:00"), k("2026-11-18 13:00")],
        remove=[k("2026-11-18 12:00"), k("2026-11-17 12:00")],
        reasons={
            k("2026-11-24 12:00"): ("newest archive", "younger than 7 days"),
            k("2026-11-18 13:00"): ("younger than 7 days",),
        },
    ),
    # Another CI job uploaded a newer backup between ours finishing and retention running: with max 1 ours
    # would be deleted the moment it was made.
    "just-made-kept": Case(
        archives=[pg("2026-11-25 10:00"), pg("2026-11-25 10:01"), pg("2026-11-24 10:00")],
        policy=RetentionPolicy(max_backups=1),
        just_made=(k("2026-11-25 10:00"),),
        keep=[k("2026-11-25 10:01"), k("2026-11-25 10:00")],
        remove=[k("2026-11-24 10:00")],
        reasons={k("2026-11-25 10:00"): ("just made",)},
    ),
    # No rule at all: a year of archives and nothing removed.
    "no-policy-keeps-all": Case(
        archives=[
            pg("2025-11-25 02:00"),
            pg("2026-05-25 02:00"),
            pg("2026-11-24 02:00"),
            pg("2026-11-25 02:00"),
        ],
        policy=RetentionPolicy(max_backups=None),
        keep=[k("2026-11-25 02:00"), k("2026-11-24 02:00"), k("2026-05-25 02:00"), k("2025-11-25 02:00")],
        remove=[],
        reasons={
            k("2026-11-25 02:00"): ("newest archive", "no retention rule set"),
            k("2025-11-25 02:00"): ("no retention rule set",),
        },
    ),
    # The oldest is under object lock: a delete would fail anyway, so it is reported as kept, and why.
    "protected-kept": Case(
        archives=[pg("2026-11-01 02:00", protected=True), pg("2026-11-10 02:00"), pg("2026-11-20 02:00")],
        policy=RetentionPolicy(max_backups=1),
        keep=[k("2026-11-20 02:00"), k("2026-11-01 02:00", protected=True)],
        remove=[k("2026-11-10 02:00")],
        reasons={k("2026-11-01 02:00", protected=True): ("protected by object lock",)},
    ),
    # Dated two days ahead (a skewed runner clock). It is kept, and it does not take the single slot:
    # the real newest (an hour ago) stays and only the one from two hours ago goes.
    "future-dated": Case(
        archives=[pg("2026-11-27 12:00"), pg("2026-11-25 11:00"), pg("2026-11-25 10:00")],
        policy=RetentionPolicy(max_backups=1),
        keep=[k("2026-11-27 12:00"), k("2026-11-25 11:00")],
        remove=[k("2026-11-25 10:00")],
        reasons={
            k("2026-11-27 12:00"): ("dated in the future",),
            k("2026-11-25 11:00"): ("newest archive", "among newest 1"),
        },
    ),
    # max 2, 3 days and 2 monthly together, NOW being 2026-11-25 12:00:
    #   11-25 06:00  newest; newest 2; 6 hours old; newest of November
    #   11-24 06:00  newest 2; 1 day 6 hours old
    #   11-22 13:00  2 days 23 hours old: only the age rule keeps it
    #   11-22 11:00  3 days 1 hour old: no rule
    #   11-01 06:00  November's newest is 11-25: no rule
    #   10-31 06:00  newest of October: second monthly
    #   10-15 06:00, 09-30 06:00  the two monthly slots are used by November and October: no rule
    "union-of-rules": Case(
        archives=[
            pg("2026-09-30 06:00"),
            pg("2026-10-15 06:00"),
            pg("2026-10-31 06:00"),
            pg("2026-11-01 06:00"),
            pg("2026-11-22 11:00"),
            pg("2026-11-22 13:00"),
            pg("2026-11-24 06:00"),
            pg("2026-11-25 06:00"),
        ],
        policy=RetentionPolicy(max_backups=2, retention_days=3, keep_monthly=2),
        keep=[k("2026-11-25 06:00"), k("2026-11-24 06:00"), k("2026-11-22 13:00"), k("2026-10-31 06:00")],
        remove=[k("2026-11-22 11:00"), k("2026-11-01 06:00"), k("2026-10-15 06:00"), k("2026-09-30 06:00")],
        reasons={
            k("2026-11-25 06:00"): (
                "newest archive",
                "among newest 2",
                "younger than 3 days",
                "monthly 2026-11",
            ),
            k("2026-11-24 06:00"): ("among newest 2", "younger than 3 days"),
            k("2026-11-22 13:00"): ("younger than 3 days",),
            k("2026-10-31 06:00"): ("monthly 2026-10",),
            k("2026-11-01 06:00"): ("older than the newest 2 and outside every other rule",),
        },
    ),
    # ISO weeks, not calendar years: 2026-12-31 (Thu) and 2027-01-02 (Sat) are both in 2026-W53, so weekly 2
    # keeps 2027-01-02 for W53 and 12-27 (Sun) for W52; 12-31 and 12-26 go.
    "iso-week-across-new-year": Case(
        archives=[
            pg("2026-12-26 10:00"),
            pg("2026-12-27 10:00"),
            pg("2026-12-31 10:00"),
            pg("2027-01-02 10:00"),
        ],
        policy=RetentionPolicy(max_backups=None, keep_weekly=2),
        now=at("2027-01-03 12:00"),
        keep=[k("2027-01-02 10:00"), k("2026-12-27 10:00")],
        remove=[k("2026-12-31 10:00"), k("2026-12-26 10:00")],
        reasons={
            k("2027-01-02 10:00"): ("newest archive", "weekly 2026-W53"),
            k("2026-12-27 10:00"): ("weekly 2026-W52",),
            k("2026-12-31 10:00"): ("outside 2 weekly",),
        },
    ),
    # Days are UTC days: 01:00 at +02:00 on 11-25 is 23:00 UTC on 11-24, the newest of that day, so it
    # (not 11-24 10:00) is the second daily.
    "days-are-utc-days": Case(
        archives=[
            named("utc-morning.sql.gz", at("2026-11-25 08:00")),
            named(
                "plus-two-after-midnight.sql.gz",
                datetime(2026, 11, 25, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            ),
            named("utc-previous-day.sql.gz", at("2026-11-24 10:00")),
        ],
        policy=RetentionPolicy(max_backups=None, keep_daily=2),
        keep=["utc-morning.sql.gz", "plus-two-after-midnight.sql.gz"],
        remove=["utc-previous-day.sql.gz"],
        reasons={"plus-two-after-midnight.sql.gz": ("daily 2026-11-24",)},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    plan = plan_retention(case.archives, case.policy, case.now, just_made=case.just_made)

    assert keys(plan.keep) == case.keep
    assert keys(plan.remove) == case.remove
    assert_partition(plan, case.archives)
    actual = reasons_by_key(plan)
    for key, expected in case.reasons.items():
        assert actual[key] == expected, key


def test_plan_does_not_depend_on_input_order() -> None:
    archives = hourly_ish_90_days()
    policy = RetentionPolicy(max_backups=5, retention_days=2, keep_daily=7, keep_weekly=4, keep_monthly=12)
    shuffled = archives[:]
    random.Random(1).shuffle(shuffled)

    assert plan_retention(shuffled, policy, NOW) == plan_retention(archives, policy, NOW)


# --- GFS over 90 days -------------------------------------------------------------------------------------

GAP_DAYS = {"2026-10-26", "2026-10-27", "2026-10-28", "2026-10-29", "2026-10-30", "2026-10-31", "2026-11-01"}
GAP_DAYS |= {"2026-11-21", "2026-11-22"}


def hourly_ish_90_days() -> list[ArchiveRef]:
    """Four backups a day (02, 08, 14, 20 UTC) from Thu 2026-08-27 to Wed 2026-11-25 08:00 (NOW is 12:00).

    Two gaps, as real schedules have: ISO week 2026-W44 (Mon 10-26 to Sun 11-01, the runner broken for a
    week, which also empties the end of October) and the weekend 11-21/11-22.
    """
    archives: list[ArchiveRef] = []
    day = at("2026-08-27 00:00")
    while day < NOW:
        if day.date().isoformat() not in GAP_DAYS:
            for hour in (2, 8, 14, 20):
                moment = day + timedelta(hours=hour)
                if moment < NOW:
                    archives.append(pg(f"{moment:%Y-%m-%d %H:%M}"))
        day += timedelta(days=1)
    return archives


def test_ninety_day_set_is_what_the_gfs_expectations_assume() -> None:
    archives = hourly_ish_90_days()
    # 90 days from 08-27 to 11-24, minus 9 gap days, at 4 a day; plus 02:00 and 08:00 on 11-25.
    assert len(archives) == (90 - 9) * 4 + 2
    assert min(a.created_at for a in archives) == at("2026-08-27 02:00")
    assert max(a.created_at for a in archives) == at("2026-11-25 08:00")


# The days with archives, newest first: 11-25, 11-24, 11-23, then (skipping the weekend gap) 11-20, 11-19,
# 11-18, 11-17. Each day's newest is 20:00, except today's, 08:00.
DAILY_7 = {
    k("2026-11-25 08:00"): ("newest archive", "daily 2026-11-25"),
    k("2026-11-24 20:00"): ("daily 2026-11-24",),
    k("2026-11-23 20:00"): ("daily 2026-11-23",),
    k("2026-11-20 20:00"): ("daily 2026-11-20",),
    k("2026-11-19 20:00"): ("daily 2026-11-19",),
    k("2026-11-18 20:00"): ("daily 2026-11-18",),
    k("2026-11-17 20:00"): ("daily 2026-11-17",),
}
# ISO weeks with archives, newest first: W48 (Mon 11-23 to today) -> 11-25 08:00; W47 (11-16 to 11-22, its
# weekend empty) -> Fri 11-20 20:00; W46 -> Sun 11-15 20:00; W45 -> Sun 11-08 20:00. W44 is empty and
# does not use up a slot.
WEEKLY_4 = {
    k("2026-11-25 08:00"): ("newest archive", "weekly 2026-W48"),
    k("2026-11-20 20:00"): ("weekly 2026-W47",),
    k("2026-11-15 20:00"): ("weekly 2026-W46",),
    k("2026-11-08 20:00"): ("weekly 2026-W45",),
}
# Months, newest first: November -> 11-25 08:00; October's last week is in the gap, so its newest is Sun
# 10-25 20:00; September -> 09-30 20:00.
MONTHLY_3 = {
    k("2026-11-25 08:00"): ("newest archive", "monthly 2026-11"),
    k("2026-10-25 20:00"): ("monthly 2026-10",),
    k("2026-09-30 20:00"): ("monthly 2026-09",),
}
# Twelve asked, four months exist: August's newest (Mon 08-31 20:00) joins; no older archive is invented.
MONTHLY_12 = {**MONTHLY_3, k("2026-08-31 20:00"): ("monthly 2026-08",)}
# All three together, union: the only overlaps are 11-25 08:00 (all three) and 11-20 20:00 (daily and
# weekly), so 7 + 4 + 4 - 2 - 1 = 12 archives.
GFS_ALL = {
    k("2026-11-25 08:00"): ("newest archive", "daily 2026-11-25", "weekly 2026-W48", "monthly 2026-11"),
    k("2026-11-24 20:00"): ("daily 2026-11-24",),
    k("2026-11-23 20:00"): ("daily 2026-11-23",),
    k("2026-11-20 20:00"): ("daily 2026-11-20", "weekly 2026-W47"),
    k("2026-11-19 20:00"): ("daily 2026-11-19",),
    k("2026-11-18 20:00"): ("daily 2026-11-18",),
    k("2026-11-17 20:00"): ("daily 2026-11-17",),
    k("2026-11-15 20:00"): ("weekly 2026-W46",),
    k("2026-11-08 20:00"): ("weekly 2026-W45",),
    k("2026-10-25 20:00"): ("monthly 2026-10",),
    k("2026-09-30 20:00"): ("monthly 2026-09",),
    k("2026-08-31 20:00"): ("monthly 2026-08",),
}

GFS_CASES = {
    "daily-7": (RetentionPolicy(max_backups=None, keep_daily=7), DAILY_7, "outside 7 daily"),
    "weekly-4": (RetentionPolicy(max_backups=None, keep_weekly=4), WEEKLY_4, "outside 4 weekly"),
    "monthly-3": (RetentionPolicy(max_backups=None, keep_monthly=3), MONTHLY_3, "outside 3 monthly"),
    "monthly-12": (RetentionPolicy(max_backups=None, keep_monthly=12), MONTHLY_12, "outside 12 monthly"),
    "daily-weekly-monthly": (
        RetentionPolicy(max_backups=None, keep_daily=7, keep_weekly=4, keep_monthly=12),
        GFS_ALL,
        "outside 7 daily, 4 weekly, 12 monthly",
    ),
}


@pytest.mark.parametrize(("policy", "expected", "removal_reason"), GFS_CASES.values(), ids=GFS_CASES.keys())
def test_gfs_over_ninety_days(
    policy: RetentionPolicy, expected: dict[str, tuple[str, ...]], removal_reason: str
) -> None:
    archives = hourly_ish_90_days()
    plan = plan_retention(archives, policy, NOW)

    # Keys embed the timestamp with a fixed width, so here (only here) name order is time order.
    assert keys(plan.keep) == sorted(expected, reverse=True)
    assert {d.archive.key: d.reasons for d in plan.keep} == expected
    assert len(plan.remove) == len(archives) - len(expected)
    assert {d.reasons for d in plan.remove} == {(removal_reason,)}
    assert_partition(plan, archives)


def test_gfs_with_count_rule_on_top() -> None:
    # max 5 adds the five newest (11-25 08:00, 02:00, 11-24 20:00, 14:00, 08:00) to the 12 of GFS_ALL; two of
    # them are already there, so 12 + 3 = 15.
    policy = RetentionPolicy(max_backups=5, keep_daily=7, keep_weekly=4, keep_monthly=12)
    plan = plan_retention(hourly_ish_90_days(), policy, NOW)

    extra = {k("2026-11-25 02:00"), k("2026-11-24 14:00"), k("2026-11-24 08:00")}
    assert set(keys(plan.keep)) == set(GFS_ALL) | extra
    assert len(plan.keep) == 15
    assert reasons_by_key(plan)[k("2026-11-24 20:00")] == ("among newest 5", "daily 2026-11-24")
    assert {d.reasons for d in plan.remove} == {("older than the newest 5 and outside every other rule",)}


# --- policy -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("max_backups", 0),
        ("max_backups", -3),
        ("retention_days", 0),
        ("retention_days", -1),
        ("keep_daily", -1),
        ("keep_weekly", -2),
        ("keep_monthly", -12),
    ],
)
def test_invalid_policy_names_field_and_value(field_name: str, value: int) -> None:
    with pytest.raises(ConfigError) as caught:
        RetentionPolicy(**{field_name: value})

    assert caught.value.message.startswith(f"{field_name} ")
    assert caught.value.message.endswith(f"got {value}")
    assert field_name in caught.value.hint
    assert caught.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize(("field_name", "value"), [("max_backups", "3"), ("keep_daily", True), ("retention_days", 1.5)])
def test_policy_value_of_wrong_type_is_a_config_error(field_name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{field_name} must be a whole number, got {value!r}")):
        RetentionPolicy(**{field_name: value})  # type: ignore[arg-type]


def test_smallest_valid_policy_values_are_accepted() -> None:
    policy = RetentionPolicy(max_backups=1, retention_days=1, keep_daily=0, keep_weekly=0, keep_monthly=0)

    assert (policy.max_backups, policy.retention_days) == (1, 1)


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        (RetentionPolicy(), "newest 30 per database"),
        (RetentionPolicy(max_backups=3), "newest 3 per database"),
        (
            RetentionPolicy(max_backups=5, retention_days=7, keep_daily=7, keep_weekly=4, keep_monthly=12),
            "newest 5, 7 days, 7 daily, 4 weekly, 12 monthly",
        ),
        (RetentionPolicy(max_backups=None, retention_days=1), "1 day"),
        (RetentionPolicy(max_backups=None, keep_weekly=4), "4 weekly"),
        (RetentionPolicy(max_backups=None), "keep everything (no retention rule set)"),
    ],
)
def test_describe(policy: RetentionPolicy, text: str) -> None:
    assert policy.describe() == text


# --- misuse ---------------------------------------------------------------------------------------------


def test_naive_created_at_is_refused() -> None:
    naive = ArchiveRef("a.sql.gz", "postgres", "app", datetime(2026, 11, 25, 10, 0))

    with pytest.raises(ValueError, match=r"created_at of 'a\.sql\.gz' must be timezone-aware"):
        plan_retention([naive], RetentionPolicy(), NOW)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        plan_retention([pg("2026-11-25 10:00")], RetentionPolicy(), datetime(2026, 11, 25, 12, 0))


def test_just_made_as_a_bare_string_is_refused() -> None:
    # As a string it would be a set of characters and protect nothing.
    with pytest.raises(TypeError, match="just_made"):
        plan_retention([pg("2026-11-25 10:00")], RetentionPolicy(), NOW, just_made=k("2026-11-25 10:00"))


def test_duplicate_key_is_refused() -> None:
    # The same key in two groups could be kept by one decision and deleted by the other.
    first = pg("2026-11-25 10:00")
    twice = [first, ArchiveRef(first.key, "postgres", "app", at("2026-11-20 10:00"), series="safety")]

    with pytest.raises(ValueError, match="listed more than once"):
        plan_retention(twice, RetentionPolicy(max_backups=1), NOW)


def test_empty_listing_gives_empty_plan() -> None:
    assert plan_retention([], RetentionPolicy(), NOW) == RetentionPlan(keep=(), remove=())
