"""`chrono-ci status`: is each database still being backed up? Against real PostgreSQL backups in a folder and
real objects in SeaweedFS; the pure rules (durations, staleness, the size-drop flag) also directly.

Staleness cannot be produced honestly without waiting a day, so some tests move a real backup's `created_at`
back in backup_metadata.json (or in the S3 object's chrono-created-at), and rename it as chrono-ci would have
named it then (a record whose time disagrees with its name is not trusted): that field is the backup's recorded
time, the one thing status reads to compute an age; everything else about those backups is real.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from chrono_ci.archive.names import ArchiveName, archive_name
from chrono_ci.config.parsers import parse_duration
from chrono_ci.errors import ConfigError
from chrono_ci.jobs.status import Copy, StatusArchive, build_status, format_duration
from chrono_ci.jobs.status_loaders import from_folder
from chrono_ci.storage.s3.config import S3Config
from chrono_ci.storage.s3.store import S3Storage
from tests.fixtures.postgres import TEST_PASSWORD, CliResult, PgServer
from tests.fixtures.seaweedfs_server import SeaweedFS

Run = Callable[..., CliResult]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# A table with enough rows that emptying it shows in the dump's size.
BIG_SQL = """
CREATE TABLE items (id int PRIMARY KEY, label text);
INSERT INTO items SELECT g, 'item number ' || g || ' with some padding text' FROM generate_series(1, 20000) g;
"""
SMALL_SQL = "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3);"


# ------------------------------------------------------------------------------------------------ helpers


def manifest(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "backup_metadata.json").read_text())["backups"]  # type: ignore[no-any-return]


def named_at(file: str, moment: datetime) -> str:
    """The name chrono-ci gives the archive `file` made at `moment`."""
    parsed = ArchiveName.parse(file)
    assert parsed is not None
    return archive_name(parsed.kind, parsed.series, moment, file[file.index(".sql") :])


def set_created_at(folder: Path, file: str, moment: datetime) -> str:
    """Move one real backup back in time (see the module docstring for why); returns its new name."""
    path = folder / "backup_metadata.json"
    data = json.loads(path.read_text())
    renamed = named_at(file, moment)
    for entry in data["backups"]:
        if entry["file"] == file:
            entry["created_at"] = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
            entry["file"] = renamed
    (folder / file).rename(folder / renamed)
    path.write_text(json.dumps(data, indent=2))
    return renamed


def status_json(run_cli: Run, *args: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    result = run_cli("--json", "status", *args, env=env)
    assert result.stdout.strip(), result.output
    return result.code, json.loads(result.stdout), result.stderr


def by_database(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(d["database"]): d for d in document["databases"]}


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def backup(run_cli: Run, url: str, folder: Path, *args: str, code: int = 0, **extra: str) -> CliResult:
    result = run_cli("backup", "postgres", *args, env={"DATABASE_URL": url, "BACKUP_DIR": str(folder), **extra})
    assert result.code == code, result.output
    return result


# --------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26h", timedelta(hours=26)),
        ("90m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 2W ", timedelta(weeks=2)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("26", "has no unit"),
        ("", "is not a duration"),
        ("26 hours", "is not a duration"),
        ("-3h", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("h", "is not a duration"),
        ("1h2h", "gives the unit 'h' twice"),
        ("0h", "is zero"),
        ("99999999999999d", "is too long"),
    ],
)
def test_parse_duration_refuses_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(text, "--max-age")
    assert message in caught.value.message and caught.value.message.startswith("--max-age=")
    assert "26h" in caught.value.hint or "for example" in caught.value.hint


def test_format_duration() -> None:
    assert format_duration(timedelta(days=3, hours=2, minutes=5)) == "3d 2h"
    assert format_duration(timedelta(hours=5, minutes=12)) == "5h 12m"
    assert format_duration(timedelta(minutes=12, seconds=3)) == "12m"
    assert format_duration(timedelta(seconds=-5)) == "0s"


# ------------------------------------------------------------------------------------------- pure rules


def archive(
    file: str,
    hours_ago: float,
    size: int = 1000,
    *,
    source: str = "db:5432/app",
    raw: int | None = None,
    ok: bool | None = True,
    copies: tuple[Copy, ...] = (Copy("local", "/b/x"),),
    series: str = "backup",
) -> StatusArchive:
    return StatusArchive(
        file=file,
        kind="postgres",
        series=series,
        source=source,
        database=source.rsplit("/", 1)[-1],
        created_at=NOW - timedelta(hours=hours_ago),
        size_bytes=size,
        raw_size_bytes=raw,
        verified_ok=ok,
        verified_level="check" if ok is not None else None,
        copies=copies,
    )


def test_build_status_groups_by_kind_and_source_and_checks_age() -> None:
    archives = [
        archive("a1", 30, source="h:5432/app"),
        archive("a2", 2, source="h:5432/app"),
        archive("b1", 50, source="h:5432/shop"),
        archive("b2", 1, source="other:5432/shop", series="safety"),  # safety backups are not watched
    ]
    report = build_status(archives, NOW, timedelta(hours=26))
    assert [(d.source, d.good) for d in report.databases] == [("h:5432/app", 2), ("h:5432/shop", 1)]
    app, shop = report.databases
    assert app.newest is not None and app.newest.file == "a2" and app.age == timedelta(hours=2) and app.ok
    assert shop.stale and not shop.ok and "more than the allowed 1d 2h" in shop.problems[0].message
    assert not report.ok
    assert report.stored_bytes == {"local": 4000} and report.archives == 4
    assert build_status(archives, NOW, timedelta(days=3)).ok
    assert build_status(archives, NOW, None).ok


def test_good_means_verified_and_stored_somewhere() -> None:
    failed_upload = (Copy("s3", "s3://b/p/x", ok=False, error="AccessDenied"),)
    uploaded_only = (Copy("s3", "s3://b/p/x"),)
    gone = (Copy("local", "/b/x", ok=False, error="not found in BACKUP_DIR"),)
    assert archive("x", 1, ok=False).state == "failed"
    assert archive("x", 1, copies=failed_upload).state == "failed"
    assert "every upload failed (s3: AccessDenied)" in archive("x", 1, copies=failed_upload).problem
    assert archive("x", 1, copies=uploaded_only).state == "good"
    assert archive("x", 1, copies=gone).state == "missing"
    assert archive("x", 1, ok=None, copies=uploaded_only).state == "good"  # S3: verification not recorded
    local_and_failed_upload = (Copy("local", "/b/x"), *failed_upload)
    report = build_status([archive("x", 1, copies=local_and_failed_upload)], NOW, None)
    assert report.ok  # the local copy is a good backup, but the failed copy is worth a warning
    assert any("its s3 copy failed (AccessDenied)" in p.message for p in report.databases[0].problems)


def test_failures_after_the_newest_good_backup_are_a_warning_and_no_good_backup_an_error() -> None:
    report = build_status([archive("g", 10), archive("f1", 5, ok=False), archive("f2", 1, ok=False)], NOW, None)
    (status,) = report.databases
    assert status.newest is not None and status.newest.file == "g" and status.failed == 2 and status.ok
    assert "2 backup(s) after the newest good one are not usable; newest f2: failed its check" in (
        status.problems[0].message
    )
    report = build_status([archive("f", 1, ok=False)], NOW, None)
    assert not report.ok and report.databases[0].stale
    assert report.databases[0].problems[0].message.startswith("no good backup")
    empty = build_status([], NOW, timedelta(hours=1))
    assert not empty.ok and empty.problems[0].message.startswith("no backup found")


def test_size_drop_flag_uses_the_median_of_the_previous_backups() -> None:
    steady = [archive(f"s{i}", 20 - i, size=100, raw=1000 + i) for i in range(12)]
    assert not build_status(steady, NOW, None).databases[0].trend.drop

    dropped = [*steady, archive("drop", 1, size=100, raw=400)]
    status = build_status(dropped, NOW, None).databases[0]
    assert status.trend.drop and status.trend.measure == "sql" and len(status.trend.points) == 10
    assert status.ok  # a warning: the database may really have been emptied on purpose
    assert any(p.level == "warning" and p.message.startswith("size drop") for p in status.problems)

    # The stored size changes with the compression; the SQL size does not: no false alarm on gzip -> zstd.
    recompressed = [*steady, archive("zstd", 1, size=30, raw=1011)]
    assert not build_status(recompressed, NOW, None).databases[0].trend.drop
    # One outlier among the previous ones does not hide a drop: the median, not the mean.
    outlier = [archive("o1", 5, raw=1000), archive("o2", 4, raw=100_000), archive("o3", 3, raw=1000)]
    assert build_status([*outlier, archive("n", 1, raw=400)], NOW, None).databases[0].trend.drop


# ----------------------------------------------------------------------------------------- real backups


def test_status_of_fresh_and_stale_backups_and_max_age(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    fresh, stale = make_database(pg18, SMALL_SQL), make_database(pg18, SMALL_SQL)
    backup(run_cli, fresh, folder)
    backup(run_cli, fresh, folder)
    backup(run_cli, stale, folder)
    stale_file = next(e["file"] for e in manifest(folder) if e["database"] == db_name(stale))
    stale_file = set_created_at(folder, stale_file, datetime.now(UTC) - timedelta(days=3))
    env = {"BACKUP_DIR": str(folder)}

    plain = run_cli("status", env=env)
    assert plain.code == 0, plain.output
    assert "All 2 database(s) have a good backup (age not checked: no --max-age)." in plain.stdout
    assert "newest good backup:" in plain.stdout and "verified: check ok" in plain.stdout
    assert "stored: local" in plain.stdout
    assert TEST_PASSWORD not in plain.output and quote(TEST_PASSWORD, safe="") not in plain.output

    code, document, log = status_json(run_cli, "--max-age", "26h", env=env)
    assert code == 7, log
    databases = by_database(document)
    assert databases[db_name(fresh)]["ok"] and databases[db_name(fresh)]["good"] == 2
    assert databases[db_name(fresh)]["age_seconds"] < 600
    assert not databases[db_name(stale)]["ok"] and databases[db_name(stale)]["stale"]
    assert databases[db_name(stale)]["newest"]["file"] == stale_file
    assert "1 of 2 database(s) FAILED the status check" in log
    assert f"newest good backup is 3d old ({stale_file}), more than the allowed 1d 2h" in log
    # Each source is host:port/database, so two databases on one server stay apart.
    assert sorted(d["source"].rsplit("/", 1)[1] for d in document["databases"]) == sorted(
        db_name(u) for u in (fresh, stale)
    )
    assert document["stored_bytes"]["local"] == sum(p.stat().st_size for p in folder.glob("postgres_backup_*"))

    # The same, with the command's own --json and a longer limit: everything is fresh enough.
    passing = run_cli("status", "--max-age", "4d", "--json", env=env)
    assert passing.code == 0, passing.output
    assert json.loads(passing.stdout)["ok"] is True
    assert "All 2 database(s) have a good backup younger than 4d." in passing.stderr

    bad = run_cli("status", "--max-age", "26 hours", env=env)
    assert bad.code == 2 and "--max-age='26 hours' is not a duration" in bad.output


def test_status_with_no_backup_at_all_fails(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("status", env={"BACKUP_DIR": str(tmp_path / "nothing-here")})
    assert result.code == 7
    assert "no backup found" in result.stdout and "No good backup found in" in result.stdout


@pytest.fixture
def unrestorable_url(pg18: PgServer, make_database: Callable[..., str]) -> Iterator[str]:
    """A database whose table belongs to a role that only this server has.

    Its dump is fine and passes the integrity check, but restoring it on the throwaway scratch server used by
    `--verify restore` fails at `ALTER TABLE ... OWNER TO` (psql stops on the first error): a real backup that
    chrono-ci records with verified.ok = false.
    """
    role = f"chrono_owner_{secrets.token_hex(4)}"
    name = f"t_{secrets.token_hex(5)}"
    pg18.execute(f"CREATE ROLE {role} NOLOGIN")
    url = make_database(pg18, f"{SMALL_SQL} ALTER TABLE t OWNER TO {role};", name=name)
    yield url
    # Before make_database drops the database: a role that owns objects cannot be dropped.
    pg18.execute(f"DROP OWNED BY {role}", database=name)
    pg18.execute(f"DROP ROLE {role}")


def test_status_counts_failed_backups_apart_from_good_ones(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], unrestorable_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    always_failing = unrestorable_url
    # A good backup (integrity check), then one whose restore-verification fails: recorded, verified.ok false.
    backup(run_cli, always_failing, folder)
    backup(run_cli, always_failing, folder, "--verify", "restore", code=7)
    entries = manifest(folder)
    assert [e["verified"]["ok"] for e in entries] == [True, False]
    good_file, failed_file = entries[0]["file"], entries[1]["file"]

    code, document, log = status_json(run_cli, "--max-age", "26h", env={"BACKUP_DIR": str(folder)})
    assert code == 0, log  # the newest *good* backup is fresh; the failure after it is a warning
    (status,) = document["databases"]
    assert status["newest"]["file"] == good_file and status["good"] == 1 and status["failed"] == 1
    assert any(
        p["level"] == "warning" and f"newest {failed_file}: failed its restore verification" in p["message"]
        for p in status["problems"]
    )
    assert f"newest {failed_file}: failed its restore verification" in log

    # With the good one gone, no good backup is left: that fails even without --max-age.
    (folder / good_file).unlink()
    code, document, log = status_json(run_cli, env={"BACKUP_DIR": str(folder)})
    assert code == 7, log
    (status,) = document["databases"]
    assert status["newest"] is None and status["stale"] and status["failed"] == 2
    assert "no good backup: none of its 2 recorded backup(s) is usable" in log


def test_status_flags_a_sudden_size_drop(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    url = make_database(pg18, BIG_SQL)
    backup(run_cli, url, folder)
    backup(run_cli, url, folder)
    pg18.execute("DELETE FROM items WHERE id > 100", database=db_name(url))
    backup(run_cli, url, folder)

    code, document, log = status_json(run_cli, "--max-age", "1h", env={"BACKUP_DIR": str(folder)})
    assert code == 0, log  # flagged, not failed: the rows may have been deleted on purpose
    (status,) = document["databases"]
    trend = status["trend"]
    assert trend["drop"] is True and trend["measure"] == "sql" and len(trend["sizes"]) == 3
    assert trend["sizes"][-1]["bytes"] < trend["median_before"] / 2
    assert "warn size drop: the newest good backup's SQL size is" in log
    assert "1 warning(s)" in log


# ------------------------------------------------------------------------------------------------------ S3


def s3_env(server: SeaweedFS, bucket: str, prefix: str) -> dict[str, str]:
    return {
        "S3_URL": f"s3://{bucket}/{prefix}",
        "S3_ENDPOINT_URL": server.endpoint_url,
        "S3_REGION": server.region,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
    }


def upload_as_chrono_ci(storage: S3Storage, folder: Path, entry: dict[str, Any], created_at: str | None = None) -> str:
    """Put a real archive in S3 with the object metadata chrono-ci's upload writes (the fixed convention), named
    for `created_at` when given; returns its key."""
    key = entry["file"]
    if created_at is not None:
        key = named_at(key, datetime.fromisoformat(created_at.replace("Z", "+00:00")))
    with (folder / entry["file"]).open("rb") as source:
        storage.put(
            key,
            source,
            metadata={
                "chrono-kind": entry["kind"],
                "chrono-series": entry["series"],
                "chrono-source": quote(entry["source"], safe=""),
                "chrono-created-at": created_at or entry["created_at"],
                "chrono-compression": entry["compression"],
            },
        )
    return key


def test_status_from_seaweedfs(
    run_cli: Run,
    pg18: PgServer,
    make_database: Callable[..., str],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "backups"
    fresh, stale = make_database(pg18, SMALL_SQL), make_database(pg18, SMALL_SQL)
    backup(run_cli, fresh, folder)
    backup(run_cli, stale, folder)
    entries = {e["database"]: e for e in manifest(folder)}
    config = S3Config(bucket=s3_bucket, prefix="ci/prod", endpoint_url=seaweedfs.endpoint_url, region="us-east-1")
    storage = S3Storage(config, session=seaweedfs.session())
    upload_as_chrono_ci(storage, folder, entries[db_name(fresh)])
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat().replace("+00:00", "Z")
    upload_as_chrono_ci(storage, folder, entries[db_name(stale)], created_at=three_days_ago)
    # Not archives of ours: a stray file, an archive-named object without our metadata, and an archive under
    # another prefix of the same bucket.
    with (folder / entries[db_name(fresh)]["file"]).open("rb") as source:
        storage.put("postgres_backup_2020-01-01_00-00-00.sql.zst", source)
    storage.put("notes.txt", io.BytesIO(b"not a backup"))
    other_config = S3Config(bucket=s3_bucket, prefix="ci/other", endpoint_url=seaweedfs.endpoint_url)
    other = S3Storage(other_config, session=seaweedfs.session())
    upload_as_chrono_ci(other, folder, {**entries[db_name(fresh)], "source": "elsewhere:5432/x"})

    env = s3_env(seaweedfs, s3_bucket, "ci/prod")
    code, document, log = status_json(run_cli, "--from", "s3", "--max-age", "26h", env=env)
    assert code == 7, log
    databases = by_database(document)
    assert set(databases) == {db_name(fresh), db_name(stale)}
    assert databases[db_name(fresh)]["ok"] and not databases[db_name(stale)]["ok"]
    newest = databases[db_name(fresh)]["newest"]
    assert newest["file"] == entries[db_name(fresh)]["file"]
    assert newest["stored"] == [
        {"target": "s3", "where": f"s3://{s3_bucket}/ci/prod/{newest['file']}", "ok": True, "error": None}
    ]
    assert newest["verified"] is None  # S3 metadata records no verification result
    assert newest["size_bytes"] == entries[db_name(fresh)]["size_bytes"]
    assert document["unlisted"] == 1 and document["from"] == "s3"
    assert document["location"] == f"s3://{s3_bucket}/ci/prod"
    assert seaweedfs.secret_key not in log and seaweedfs.secret_key not in json.dumps(document)

    human = run_cli("status", "--from", "s3", "--max-age", "4d", env=env)
    assert human.code == 0, human.output
    assert "verified: not recorded here" in human.stdout and f"stored: s3 s3://{s3_bucket}/ci/prod/" in human.stdout

    missing = run_cli("status", "--from", "s3", env={"BACKUP_DIR": str(folder)})
    assert missing.code == 2 and "S3_URL is not set" in missing.output


# ------------------------------------------------------------------------------------ many databases at once


def test_parallel_backups_of_several_databases_stay_apart(
    run_cli: Run,
    pg18: PgServer,
    make_database: Callable[..., str],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """The README's matrix, on one machine: three databases backed up at the same time, three rounds, into one
    BACKUP_DIR and one S3 prefix, keeping 2 each. Needs the upload integration (BACKUP_UPLOAD=s3)."""
    folder = tmp_path / "backups"
    urls = [make_database(pg18, SMALL_SQL) for _ in range(3)]
    env = {**s3_env(seaweedfs, s3_bucket, "matrix"), "BACKUP_DIR": str(folder), "MAX_BACKUPS": "2"}
    env["BACKUP_UPLOAD"] = "s3"
    start = threading.Barrier(len(urls))

    def one(url: str) -> CliResult:
        start.wait()  # the same second, so that names collide unless reserved
        return run_cli("backup", "postgres", env={**env, "DATABASE_URL": url})

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        for _ in range(3):
            results = list(pool.map(one, urls))
            assert [r.code for r in results] == [0, 0, 0], "\n".join(r.output for r in results)

    entries = manifest(folder)
    per_source: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        per_source.setdefault(entry["source"], []).append(entry)
    assert sorted(s.rsplit("/", 1)[1] for s in per_source) == sorted(db_name(u) for u in urls)
    for source, kept in per_source.items():
        assert len(kept) == 2, f"rotation kept {len(kept)} of {source}"
        for entry in kept:
            assert (folder / entry["file"]).is_file()
            uploads = entry.get("uploads") or []
            assert [u["target"] for u in uploads if u["ok"]] == ["s3"], entry
    assert len({e["file"] for e in entries}) == 6
    assert sorted(p.name for p in folder.glob("postgres_backup_*")) == sorted(e["file"] for e in entries)

    code, local, log = status_json(run_cli, "--max-age", "1h", env=env)
    assert code == 0, log
    assert sorted(d["source"] for d in local["databases"]) == sorted(per_source)
    assert all(d["good"] == 2 for d in local["databases"])
    assert all({c["target"] for c in d["newest"]["stored"]} == {"local", "s3"} for d in local["databases"])

    code, remote, log = status_json(run_cli, "--from", "s3", "--max-age", "1h", env=env)
    assert code == 0, log
    assert sorted(d["source"] for d in remote["databases"]) == sorted(per_source)
    newest_local = {d["source"]: d["newest"]["file"] for d in local["databases"]}
    assert {d["source"]: d["newest"]["file"] for d in remote["databases"]} == newest_local
    # Every kept archive is in S3 under its own database's metadata (S3-side rotation is not asserted here).
    storage = S3Storage(
        S3Config(bucket=s3_bucket, prefix="matrix", endpoint_url=seaweedfs.endpoint_url, region="us-east-1"),
        session=seaweedfs.session(),
    )
    for entry in entries:
        head = storage.stat(entry["file"])
        assert head.metadata["chrono-source"] == quote(entry["source"], safe="")
        assert head.metadata["sha256"] == entry["sha256"]


def test_from_folder_reads_uploads_and_local_flags(tmp_path: Path) -> None:
    """The metadata fields the upload integration writes: a file not kept locally is not missing."""
    folder = tmp_path / "b"
    folder.mkdir()
    kept = "postgres_backup_2026-11-25_02-00-00.sql.zst"
    (folder / kept).write_bytes(b"x" * 1000)
    common = {
        "kind": "postgres",
        "series": "backup",
        "database": "app",
        "host": "h",
        "port": 5432,
        "source": "h:5432/app",
        "size_bytes": 1000,
        "sha256": "ab" * 32,
        "verified": {"level": "check", "ok": True},
    }
    s3_ok = {"target": "s3", "uri": "s3://b/p/f", "ok": True, "error": None}
    s3_bad = {"target": "s3", "uri": "s3://b/p/g", "ok": False, "error": "AccessDenied"}
    entries = [
        {**common, "file": kept, "created_at": "2026-11-25T02:00:00Z", "uploads": [s3_bad]},
        {
            **common,
            "file": "postgres_backup_2026-11-25_03-00-00.sql.zst",
            "created_at": "2026-11-25T03:00:00Z",
            "local": False,
            "uploads": [s3_ok],
        },
        {
            **common,
            "file": "postgres_backup_2026-11-25_04-00-00.sql.zst",
            "created_at": "2026-11-25T04:00:00Z",
            "local": False,
            "uploads": [s3_bad],
        },
        {**common, "file": "postgres_backup_2026-11-25_05-00-00.sql.zst", "created_at": "2026-11-25T05:00:00Z"},
    ]
    (folder / "backup_metadata.json").write_text(json.dumps({"backups": entries}))
    (folder / "postgres_backup_2026-11-20_00-00-00.sql.zst").write_bytes(b"y" * 500)
    found = {a.file: a for a in from_folder(folder)}
    assert [found[str(e["file"])].state for e in entries] == ["good", "good", "failed", "missing"]
    assert found["postgres_backup_2026-11-20_00-00-00.sql.zst"].state == "unlisted"
    report = build_status(list(found.values()), NOW, None)
    assert report.stored_bytes == {"local": 1500, "s3": 1000}
    (status,) = report.databases
    assert status.newest is not None and status.newest.file == entries[1]["file"]
    assert status.newest.stored_in() == ["s3"]
