"""A restore that trusts nothing: archives and records planted by whoever can write the backup folder or the
bucket are refused by restores, never counted or deleted by retention, and reported; with BACKUP_SIGNING_KEY only
records chrono-ci signed are believed. Every attack is made for real, against PostgreSQL and SeaweedFS."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pyrage
import pytest

from chrono_ci.archive.names import archive_name
from chrono_ci.archive.provenance import MIN_ARCHIVE_BYTES, Fields, vet
from chrono_ci.archive.signing import SigningKey
from chrono_ci.report.console import Reporter
from chrono_ci.retention.apply import abort_abandoned_uploads
from chrono_ci.storage.s3.config import S3Config
from chrono_ci.storage.s3.store import S3Storage
from tests.fixtures.postgres import CliResult, PgServer
from tests.fixtures.seaweedfs_server import SeaweedFS
from tests.sample import SAMPLE_SQL
from tests.test_backup import tmpfs
from tests.test_recovery import backed_up, entries, env_for, folder_state, state  # noqa: F401 - a fixture
from tests.test_upload import (
    PREFIX,
    backup_until_the_multipart_upload_starts,
    objects,
    random_hex_database,
    s3_env,
    unfinished_uploads,
)

AGE_RECIPIENT = str(pyrage.x25519.Identity.generate().to_public())

Run = Callable[..., CliResult]
KEY = "k3y-for-tests-" + "5" * 40
OTHER_KEY = "another-key-for-tests-" + "7" * 40
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def write_manifest(folder: Path, records: list[dict[str, Any]]) -> None:
    (folder / "backup_metadata.json").write_text(json.dumps({"backups": records}, indent=2))


def readme_signature(key: str, entry: dict[str, Any]) -> str:
    """The signature as the README tells anyone to compute it, written here independently of chrono_ci."""
    record = {
        "created_at": entry["created_at"],
        "file": entry["file"],
        "kind": entry["kind"],
        "sha256": entry["sha256"],
        "size": entry["size_bytes"],
        "source": entry["source"],
    }
    message = b"chrono-ci record v1\n" + json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return "hmac-sha256:" + hmac.new(key.strip().encode(), message, hashlib.sha256).hexdigest()


def plant_copy(folder: Path, entry: dict[str, Any], moment: datetime, **changes: Any) -> dict[str, Any]:
    """A copy of a real archive under the name of `moment`, with a copy of its record (changed as told):
    exactly what someone who can write the folder can make."""
    name = archive_name("postgres", "backup", moment, ".sql.zst")
    shutil.copyfile(folder / str(entry["file"]), folder / name)
    forged = {**entry, "file": name, "created_at": iso(moment), **changes}
    return {k: v for k, v in forged.items() if v is not None}


# ---------------------------------------------------------------------------------------------- restores


def test_an_archive_with_no_record_is_refused_unless_allow_unlisted(
    run_cli: Run,
    backed_up: tuple[str, Path, str],  # noqa: F811
) -> None:
    url, folder, name = backed_up
    env = env_for(url, folder)
    planted = archive_name("postgres", "backup", datetime.now(UTC) - timedelta(days=1), ".sql.zst")
    shutil.copyfile(folder / name, folder / planted)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders WHERE id > 10")
    before, files_before = state(url), folder_state(folder)

    refused = run_cli("recovery", "restore", planted, "--yes", env=env)
    assert refused.code == 10, refused.output
    assert f"{planted} has no record" in refused.output and "--allow-unlisted" in refused.output
    assert "hint:" in refused.output
    tested = run_cli("recovery", "test", planted, "--restore", env=env)
    assert tested.code == 10 and "has no record" in tested.output, tested.output
    assert state(url) == before and folder_state(folder) == files_before  # no safety backup, nothing read

    # An integrity test alone reads the archive and warns; it restores nothing anywhere.
    checked = run_cli("recovery", "test", planted, env=env)
    assert checked.code == 0 and "restoring it needs --allow-unlisted" in checked.output, checked.output

    allowed = run_cli("--json", "recovery", "restore", planted, "--yes", "--allow-unlisted", env=env)
    assert allowed.code == 0, allowed.output
    document = json.loads(allowed.stdout)
    assert document["provenance"] == {
        "record": None,
        "trusted": False,
        "signature": "none",
        "problem": "no record describes it (no entry in backup_metadata.json)",
        "allowed_unlisted": True,
    }
    assert "going on because of --allow-unlisted" in allowed.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone() == (3000,)


def test_with_a_signing_key_only_signed_records_are_trusted(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    env = {**env_for(url, folder), "BACKUP_SIGNING_KEY": KEY, "MAX_BACKUPS": "2"}
    assert run_cli("backup", "postgres", env=env).code == 0
    (real,) = entries(folder)
    assert real["signature"] == readme_signature(KEY, real)  # the documented encoding is the real one

    first = datetime.fromisoformat(str(real["created_at"]).replace("Z", "+00:00"))
    forged_bad = plant_copy(folder, real, first + timedelta(seconds=1), signature="hmac-sha256:" + "0" * 64)
    unsigned = plant_copy(folder, real, first + timedelta(seconds=2), signature=None)
    resized = plant_copy(folder, real, first + timedelta(seconds=3))
    resized["size_bytes"] = int(resized["size_bytes"]) + 1
    resized["signature"] = readme_signature(KEY, resized)  # even signed, it does not describe these bytes
    write_manifest(folder, [real, forged_bad, unsigned, resized])
    before = state(url)

    bad = run_cli("recovery", "restore", forged_bad["file"], "--yes", env=env)
    assert bad.code == 10 and "its signature does not match" in bad.output, bad.output
    missing = run_cli("recovery", "test", unsigned["file"], "--restore", env=env)
    assert missing.code == 10 and "it is not signed, and BACKUP_SIGNING_KEY is set" in missing.output
    cut = run_cli("recovery", "restore", resized["file"], "--yes", "--allow-unlisted", env=env)
    assert cut.code == 7 and "(cut short or replaced): refusing to restore it" in cut.output, cut.output
    wrong_key = run_cli("recovery", "restore", str(real["file"]), "--yes", env={**env, "BACKUP_SIGNING_KEY": OTHER_KEY})
    assert wrong_key.code == 10 and "signature does not match" in wrong_key.output
    assert state(url) == before
    assert not [e for e in entries(folder) if e["series"] == "safety"]

    listed = run_cli("--json", "recovery", "list", env=env)
    assert listed.code == 7, listed.output  # a bad signature is a failed check
    rows = {row["file"]: row for row in json.loads(listed.stdout)["archives"]}
    assert (rows[real["file"]]["signature"], rows[real["file"]]["trusted"]) == ("valid", True)
    assert rows[real["file"]]["newest"] is True
    assert (rows[forged_bad["file"]]["signature"], rows[forged_bad["file"]]["trusted"]) == ("invalid", False)
    assert (rows[unsigned["file"]]["signature"], rows[unsigned["file"]]["trusted"]) == ("missing", False)
    human = run_cli("recovery", "list", env=env)
    assert "BAD SIGNATURE" in human.stdout and "UNSIGNED" in human.stdout and "signed" in human.stdout

    status = run_cli("--json", "status", env=env)
    assert status.code == 0, status.output
    document = json.loads(status.stdout)
    assert document["untrusted"] == 3
    (database,) = document["databases"]
    assert database["newest"]["file"] == real["file"] and database["newest"]["signature"] == "valid"

    # Retention: the forgeries are newer than the real backup, yet with MAX_BACKUPS=2 the real one stays.
    again = run_cli("--json", "backup", "postgres", env=env)
    assert again.code == 0, again.output
    result = json.loads(again.stdout)
    assert {r["file"] for r in result["rejected"]} == {forged_bad["file"], unsigned["file"], resized["file"]}
    assert result["removed"] == []
    left = {p.name for p in folder.glob("postgres_backup_*")}
    assert {str(real["file"]), forged_bad["file"], unsigned["file"], resized["file"]} <= left
    assert "is not counted as a backup and is never deleted" in again.stderr

    restored = run_cli("recovery", "restore", str(real["file"]), "--yes", env=env)
    assert restored.code == 0, restored.output
    assert "signature valid" in restored.stdout


def test_the_signing_key_must_be_usable(run_cli: Run, tmp_path: Path) -> None:
    for value, needle in (("", "is set but empty"), ("short-key", "shorter than 32 characters")):
        result = run_cli("recovery", "list", env={"BACKUP_DIR": str(tmp_path), "BACKUP_SIGNING_KEY": value})
        assert result.code == 2 and needle in result.output and "hint:" in result.output, result.output
        assert not value or value not in result.output


# ---------------------------------------------------------------------------------------------- retention


def _storage(seaweedfs: SeaweedFS, bucket: str) -> S3Storage:
    config = S3Config(bucket=bucket, prefix=PREFIX, endpoint_url=seaweedfs.endpoint_url, region=seaweedfs.region)
    return S3Storage(config, session=seaweedfs.session())


def _forge_object(storage: S3Storage, source: str, moment: datetime, body: bytes, signature: str | None = None) -> str:
    """An object with chrono-ci's name and every piece of chrono-ci's metadata, as anyone with the bucket's
    credentials can write it."""
    name = archive_name("postgres", "backup", moment, ".sql.zst")
    metadata = {
        "chrono-kind": "postgres",
        "chrono-series": "backup",
        "chrono-source": quote(source, safe=""),
        "chrono-created-at": iso(moment),
        "chrono-compression": "zstd",
        "chrono-size": str(len(body)),
    }
    if signature is not None:
        metadata["chrono-signature"] = signature
    storage.put(name, io.BytesIO(body), metadata)
    return name


@pytest.mark.parametrize("signed", [False, True], ids=["no-key-tiny-forgeries", "key-plausible-forgeries"])
def test_forged_objects_in_s3_never_push_real_backups_out(
    run_cli: Run,
    pg18: PgServer,
    make_database: Callable[..., str],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
    signed: bool,
) -> None:
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "2", **s3_env(seaweedfs, s3_bucket)}
    if signed:
        env["BACKUP_SIGNING_KEY"] = KEY
    assert run_cli("backup", "postgres", env=env).code == 0
    (first,) = entries(folder)
    source = str(first["source"])
    storage = _storage(seaweedfs, s3_bucket)
    head = storage.stat(str(first["file"])).metadata
    assert head["chrono-size"] == str(first["size_bytes"])
    assert ("chrono-signature" in head) is signed
    if signed:
        assert head["chrono-signature"] == first["signature"]

    made = datetime.fromisoformat(str(first["created_at"]).replace("Z", "+00:00"))
    # Without a key, a few bytes with our metadata used to count as the newest backups; with one, even objects
    # that look right in every way (a plausible size) are forgeries unless signed with the key.
    body = b"\x28\xb5\x2f\xfd" if not signed else os.urandom(4096)
    forged = [_forge_object(storage, source, made + timedelta(seconds=s), body) for s in (1, 2, 3)]
    if signed:
        forged.append(_forge_object(storage, source, made + timedelta(seconds=4), body, "hmac-sha256:" + "1" * 64))

    # The next real backup comes after the forgeries (in another second than any of them).
    time.sleep(max(0.0, (made + timedelta(seconds=6) - datetime.now(UTC)).total_seconds()))
    result = run_cli("--json", "backup", "postgres", env=env)
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    second = document["backups"][0]["file"]
    left = set(objects(seaweedfs, s3_bucket))
    assert {str(first["file"]), second} <= left  # both real backups are the newest 2
    assert set(forged) <= left  # and nothing forged was deleted
    rejected = {r["file"]: r for r in document["rejected"] if r["location"].startswith("s3://")}
    assert set(rejected) == set(forged)
    if signed:
        assert rejected[forged[0]]["problem"] == "it is not signed, and BACKUP_SIGNING_KEY is set"
        assert rejected[forged[-1]]["signature"] == "invalid"
    else:
        assert "smaller than any archive chrono-ci makes" in rejected[forged[0]]["problem"]
    assert f"{forged[0]} in s3://{s3_bucket}/{PREFIX} is not counted as a backup" in result.stderr

    pruned = run_cli("--json", "prune", "--from", "s3", env={**env, "MAX_BACKUPS": "1"})
    assert pruned.code == 0, pruned.output
    report = json.loads(pruned.stdout)
    assert report["removed"] == [str(first["file"])] and {r["file"] for r in report["rejected"]} == set(forged)
    assert set(forged) | {second} <= set(objects(seaweedfs, s3_bucket))

    listed = run_cli("--json", "recovery", "list", "--from", "s3", env=env)
    rows = {row["file"]: row for row in json.loads(listed.stdout)["archives"]}
    assert rows[second]["trusted"] and rows[second]["newest"]
    assert not any(rows[name]["trusted"] or rows[name]["newest"] for name in forged)
    status = run_cli("--json", "status", "--from", "s3", env=env)
    assert status.code == 0, status.output
    (database,) = json.loads(status.stdout)["databases"]
    assert database["newest"]["file"] == second and database["good"] == 1


def test_forged_tiny_files_in_the_folder_are_reported_never_counted(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1"}
    assert run_cli("backup", "postgres", env=env).code == 0
    (real,) = entries(folder)
    made = datetime.fromisoformat(str(real["created_at"]).replace("Z", "+00:00"))
    forged = []
    for seconds in (1, 2):
        name = archive_name("postgres", "backup", made + timedelta(seconds=seconds), ".sql.zst")
        (folder / name).write_bytes(b"evil")
        forged.append(
            {
                **real,
                "file": name,
                "created_at": iso(made + timedelta(seconds=seconds)),
                "size_bytes": 4,
                "sha256": hashlib.sha256(b"evil").hexdigest(),
            }
        )
    write_manifest(folder, [real, *forged])
    result = run_cli("--json", "prune", env=env)
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    assert document["removed"] == [] and {r["file"] for r in document["rejected"]} == {f["file"] for f in forged}
    assert (folder / str(real["file"])).is_file() and all((folder / f["file"]).is_file() for f in forged)
    tested = run_cli("backup", "test", env=env)
    assert tested.code == 0 and f"==> postgres: {real['file']}" in tested.stdout, tested.output


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kind": "supabase"}, "its recorded kind 'supabase' is not the postgres its name says"),
        ({"series": "safety"}, "its recorded series 'safety' is not the backup its name says"),
        ({"compression": "gzip"}, "its recorded compression 'gzip' is not the zstd its name says"),
        ({"source": ""}, "it records no source database"),
        ({"sha256": "abc"}, "its recorded sha256 is not 64 hexadecimal digits"),
        ({"size": "1000"}, "its recorded size is not a whole number"),
        ({"size": 999}, "it is 1000 bytes, and its record says 999"),
        ({"created_at": "yesterday"}, "its recorded creation time is not an ISO 8601 time with a time zone"),
        ({"created_at": "2026-11-25T02:00:00"}, "its recorded creation time is not an ISO 8601 time with a time zone"),
        ({"created_at": "2026-11-25T02:00:01Z"}, "its recorded creation time does not agree with the time in its name"),
    ],
)
def test_a_record_of_the_wrong_shape_is_not_trusted(change: dict[str, Any], problem: str) -> None:
    name = "postgres_backup_2026-11-25_02-00-00.sql.zst"
    good = {
        "kind": "postgres",
        "series": "backup",
        "source": "db:5432/app",
        "created_at": "2026-11-25T02:00:00.5Z",
        "size": 1000,
        "sha256": "ab" * 32,
        "compression": "zstd",
        "signature": None,
    }
    assert vet(name, Fields(**good), 1000, None, NOW).trusted
    verdict = vet(name, Fields(**{**good, **change}), 1000, None, NOW)
    assert (verdict.trusted, verdict.problem) == (False, problem)


def test_a_record_from_the_future_and_one_too_small_are_not_trusted() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    name = archive_name("postgres", "backup", future, ".sql.zst")
    fields = Fields("postgres", "backup", "db:5432/app", iso(future), 1000, "ab" * 32, "zstd", None)
    assert vet(name, fields, 1000, None, datetime.now(UTC)).problem == "its recorded creation time is in the future"
    small = Fields("postgres", "backup", "db:5432/app", "2026-11-25T02:00:00Z", 100, "ab" * 32, "zstd", None)
    verdict = vet("postgres_backup_2026-11-25_02-00-00.sql.zst", small, 100, None, NOW)
    assert verdict.problem is not None and verdict.problem.startswith("it is 100 bytes, smaller than any archive")
    key = SigningKey(KEY)
    assert vet("postgres_backup_2026-11-25_02-00-00.sql.zst", small, 100, key, NOW).signature == "missing"


@pytest.mark.parametrize(
    ("compression", "extra"),
    [
        ("zstd", {}),
        ("gzip", {"BACKUP_COMPRESSION_LEVEL": "9"}),
        ("none", {}),
        ("zstd", {"BACKUP_COMPRESSION_LEVEL": "19", "BACKUP_ENCRYPTION_RECIPIENTS": AGE_RECIPIENT}),
    ],
)
def test_every_real_archive_of_an_empty_database_is_above_the_floor(
    run_cli: Run,
    pg18: PgServer,
    make_database: Callable[..., str],
    tmp_path: Path,
    compression: str,
    extra: dict[str, str],
) -> None:
    """The floor that turns away forged tiny objects must never turn away a real archive: the smallest one,
    of an empty database, is above it whatever the compression and with encryption."""
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": make_database(pg18), "BACKUP_DIR": str(folder), "BACKUP_COMPRESSION": compression, **extra}
    result = run_cli("--json", "backup", "postgres", env=env)
    assert result.code == 0, result.output
    size = json.loads(result.stdout)["backups"][0]["size_bytes"]
    assert size > MIN_ARCHIVE_BYTES + 64, size  # with room to spare


# ---------------------------------------------------------------------------------------------- leftovers


BIG_TABLE = "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS h FROM generate_series(1, 1500000) g"
HOLDER = """
import sys
from pathlib import Path
from chrono_ci.storage.local import create_held
fds = [create_held(Path(p)) for p in sys.argv[1:]]
print("holding", flush=True)
sys.stdin.read()
"""


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chrono_ci", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


def _hidden(folder: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(prefix))


def test_leftovers_of_a_killed_run_are_removed_and_a_live_runs_are_not(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    big = make_database(pg18, BIG_TABLE)
    proc = _start(["backup", "postgres"], {"DATABASE_URL": big, "BACKUP_DIR": str(folder)})
    _wait_for(
        lambda: (
            folder.is_dir()
            and any(p.name.startswith(".chrono-tmp-") and p.stat().st_size > 0 for p in folder.iterdir())
            and bool(_hidden(folder, ".chrono-reserved-"))
        ),
        "the dump to be written",
    )
    proc.send_signal(signal.SIGKILL)  # no `finally` runs: what a killed runner leaves
    proc.communicate(timeout=30)
    killed = _hidden(folder, ".chrono-tmp-") + _hidden(folder, ".chrono-reserved-")
    assert len(killed) == 2, killed

    # A run still going, in another process: its files are held and must survive the sweep.
    live = [folder / ".chrono-tmp-0123456789abcdef-postgres_backup_2030-01-01_00-00-00.sql.zst"]
    live.append(folder / ".chrono-reserved-postgres_backup_2030-01-01_00-00-00.sql.zst")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *map(str, live)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        small = make_database(pg18, "CREATE TABLE t (x int)")
        result = run_cli("backup", "postgres", env={"DATABASE_URL": small, "BACKUP_DIR": str(folder)})
        assert result.code == 0, result.output
        assert f"removed 2 file(s) an interrupted run left in {folder}" in result.stdout
        assert all(p.exists() for p in live)
        assert not set(killed) & {p.name for p in folder.iterdir()}
    finally:
        holder.communicate(input="", timeout=30)  # the holder exits: its locks go with it
    again = run_cli("backup", "postgres", env={"DATABASE_URL": small, "BACKUP_DIR": str(folder)})
    assert again.code == 0 and "removed 2 file(s)" in again.stdout, again.output
    assert not any(p.exists() for p in live)


def test_a_multipart_upload_of_a_killed_run_is_aborted_even_unrecorded(
    run_cli: Run,
    pg18: PgServer,
    make_database: Callable[..., str],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    # Over 100 MB of archive, many 8 MiB parts, so the kill lands mid-upload.
    url = random_hex_database(pg18, make_database, 1_400_000)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder), **s3_env(seaweedfs, s3_bucket)}
    proc = backup_until_the_multipart_upload_starts(env, seaweedfs, s3_bucket)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (abandoned,) = unfinished_uploads(seaweedfs, s3_bucket)
    assert not (folder / ".chrono-unfinished-uploads.json").exists()  # killed: nothing was recorded
    client = seaweedfs.client()
    client.create_multipart_upload(Bucket=s3_bucket, Key=f"{PREFIX}/notes.bin")  # ours by prefix, not by name
    client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/postgres_backup_2026-01-01_00-00-00.sql.zst")

    # The next run, minutes later: the upload may be another run's that is still going, so it stays.
    small = {**env, "DATABASE_URL": make_database(pg18, "CREATE TABLE t (x int)")}
    assert run_cli("backup", "postgres", env=small).code == 0
    assert abandoned in unfinished_uploads(seaweedfs, s3_bucket)
    # A run more than an hour later (its clock moved instead of waiting an hour) aborts it, and only it.
    storage = _storage(seaweedfs, s3_bucket)
    lines = io.StringIO()
    abort_abandoned_uploads(storage, Reporter(stream=lines), now=datetime.now(UTC) + timedelta(hours=1, minutes=5))
    assert "aborted 1 unfinished upload(s) an interrupted run left" in lines.getvalue()
    assert sorted(unfinished_uploads(seaweedfs, s3_bucket)) == [
        "elsewhere/postgres_backup_2026-01-01_00-00-00.sql.zst",
        f"{PREFIX}/notes.bin",
    ]


def test_a_manifest_that_cannot_be_updated_takes_its_archive_with_it(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    with tmpfs(tmp_path / "small-disk", "256k") as folder:
        # Earlier backups' records (their files rotated away long ago): about 150 KB of metadata that must be
        # written again, whole, next to the old copy, on a disk with about 100 KB free.
        filler = [
            {
                "file": archive_name("postgres", "backup", NOW - timedelta(hours=n), ".sql.zst"),
                "kind": "postgres",
                "series": "backup",
                "source": "elsewhere:5432/old",
                "created_at": iso(NOW - timedelta(hours=n)),
                "size_bytes": 4096,
                "sha256": "ab" * 32,
                "local": True,
            }
            for n in range(1, 700)
        ]
        write_manifest(folder, filler)
        before = (folder / "backup_metadata.json").read_bytes()
        assert len(before) > 128 * 1024
        result = run_cli("backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(folder)})
        assert result.code == 5, result.output
        assert (
            "is full" in result.output and "was removed, since backup_metadata.json could not list it" in result.output
        )
        assert (folder / "backup_metadata.json").read_bytes() == before
        assert not list(folder.glob("postgres_backup_*")), list(folder.iterdir())
        assert not [
            p.name
            for p in folder.iterdir()
            if p.name.startswith((".chrono-tmp-", ".chrono-reserved-", ".backup_metadata.json.tmp"))
        ]


# ------------------------------------------------------------------------------------- hostile names


class Tripwire:
    """A FIFO that notices being opened for reading: a writer polls it without blocking, which succeeds only
    while a reader has it open. A blocking reader is released (it reads end-of-file) instead of hanging."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.0005)
                continue
            self.opened = True
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def tripwires(*paths: Path) -> Iterator[list[Tripwire]]:
    wires = [Tripwire(path) for path in paths]
    try:
        yield wires
    finally:
        for wire in wires:
            wire.stop()


@pytest.mark.parametrize("case", ["dev-zero", "dotdot", "absolute", "fifo", "symlink-out"])
def test_names_in_the_metadata_never_open_anything_outside_the_folder(
    run_cli: Run,
    backed_up: tuple[str, Path, str],  # noqa: F811
    tmp_path: Path,
    case: str,
) -> None:
    url, folder, name = backed_up
    (real,) = entries(folder)
    made = datetime.fromisoformat(str(real["created_at"]).replace("Z", "+00:00"))
    newer = archive_name("postgres", "backup", made + timedelta(seconds=5), ".sql.zst")
    outside = tmp_path / "outside"
    outside.mkdir()
    file = {
        "dev-zero": "/dev/zero",
        "dotdot": "../outside/wire",
        "absolute": str(outside / "wire"),
        "fifo": newer,
        "symlink-out": newer,
    }[case]
    with tripwires(outside / "wire", *([folder / newer] if case == "fifo" else [])) as wires:
        if case == "symlink-out":
            (folder / newer).symlink_to(outside / "wire")
        planted = {**real, "file": file, "created_at": iso(made + timedelta(seconds=5))}
        write_manifest(folder, [real, planted])
        env = env_for(url, folder)
        tested = run_cli("backup", "test", env=env, timeout=60)
        listed = run_cli("recovery", "list", env=env, timeout=60)
        status = run_cli("status", env=env, timeout=60)
        assert not any(wire.opened for wire in wires), f"{case}: a FIFO named by the metadata was opened"
        # The wire itself works: a reader is noticed.
        probe = os.open(wires[0].path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            _wait_for(lambda: wires[0].opened, "the tripwire to notice a reader", timeout=10)
        finally:
            os.close(probe)
    for result in (tested, listed, status):
        assert "Traceback" not in result.output, result.output
    assert listed.code == 0 and status.code == 0, listed.output + status.output
    if case in ("fifo", "symlink-out"):
        # Listed as the newest backup, it is not an archive: the check says so and fails.
        assert tested.code == 7, tested.output
        reason = "not a regular file" if case == "fifo" else "is a symbolic link"
        assert reason in tested.output
    else:
        # Not even an archive's name: never opened, and the real newest backup is tested instead.
        assert tested.code == 0 and f"==> postgres: {name}" in tested.stdout, tested.output


def test_allow_unlisted_is_in_the_help_of_both_commands_that_restore(run_cli: Run) -> None:
    for command in ("restore", "test"):
        result = run_cli("recovery", command, "--help", env={"COLUMNS": "200"})
        assert result.code == 0 and "--allow-unlisted" in result.stdout, result.output
        assert "no trusted record vouches for it" in " ".join(result.stdout.split())
