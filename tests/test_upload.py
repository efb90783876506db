"""Backups that go to S3 (a real SeaweedFS) and to GitHub artifacts (the strict fake service), with retention
on every target and every failure leaving the user's data as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from chrono_ci.storage.s3.config import S3Config
from chrono_ci.storage.s3.store import S3Storage
from tests.fixtures.github import FakeArtifactService, make_artifact_storage, signed_download_url
from tests.fixtures.postgres import TEST_PASSWORD, CliResult, PgServer
from tests.fixtures.seaweedfs_server import SeaweedFS
from tests.sample import EXPECTED_TABLES, SAMPLE_SQL

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Run = Callable[..., CliResult]
PREFIX = "team/db-backups"


def s3_env(seaweedfs: SeaweedFS, bucket: str, prefix: str = PREFIX) -> dict[str, str]:
    return {
        "S3_URL": f"s3://{bucket}/{prefix}",
        "S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "S3_REGION": seaweedfs.region,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
    }


def entries(folder: Path) -> list[dict[str, object]]:
    return json.loads((folder / "backup_metadata.json").read_text())["backups"]  # type: ignore[no-any-return]


def objects(seaweedfs: SeaweedFS, bucket: str, prefix: str = PREFIX) -> dict[str, bytes]:
    client = seaweedfs.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return {o["Key"].rsplit("/", 1)[1]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


_WATCHERS: dict[str, S3Client] = {}


def unfinished_uploads(seaweedfs: SeaweedFS, bucket: str) -> list[str]:
    # One client per server, kept: making a boto3 client costs up to a second under load, long enough for a
    # watch loop to miss an upload of a few seconds entirely. A restarted server keeps its endpoint.
    if seaweedfs.endpoint_url not in _WATCHERS:
        _WATCHERS[seaweedfs.endpoint_url] = seaweedfs.client()
    client = _WATCHERS[seaweedfs.endpoint_url]
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def random_hex_database(pg18: PgServer, make_database: Callable[..., str], rows: int) -> str:
    """Random hex barely compresses: about 100 bytes of archive per row, so an upload takes many parts."""
    return make_database(
        pg18,
        "CREATE TABLE big AS SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text) AS h "
        f"FROM generate_series(1, {rows}) g",
    )


def backup_until_the_multipart_upload_starts(
    env: dict[str, str], seaweedfs: SeaweedFS, bucket: str
) -> subprocess.Popen[str]:
    """`chrono-ci backup postgres` in the background, returned once its multipart upload is listed (in flight)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chrono_ci", "backup", "postgres"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def in_flight() -> bool:
        return bool(unfinished_uploads(seaweedfs, bucket))

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not in_flight():
        time.sleep(0.005)
    if not in_flight():
        if proc.poll() is None:
            proc.kill()
        output, _ = proc.communicate(timeout=60)
        raise AssertionError(f"the multipart upload never started (exit {proc.returncode}):\n{output}")
    return proc


@pytest.fixture
def sample_url(pg18: PgServer, make_database: Callable[..., str]) -> str:
    return make_database(pg18, SAMPLE_SQL)


def test_backup_lands_locally_and_in_s3(
    run_cli: Run, sample_url: str, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    result = run_cli(
        "backup",
        "postgres",
        env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), **s3_env(seaweedfs, s3_bucket)},
    )
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    name = str(entry["file"])
    stored = objects(seaweedfs, s3_bucket)
    assert list(stored) == [name]
    assert stored[name] == (folder / name).read_bytes()
    assert hashlib.sha256(stored[name]).hexdigest() == entry["sha256"]
    head = seaweedfs.client().head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{name}")["Metadata"]
    assert head["sha256"] == entry["sha256"] and head["chrono-kind"] == "postgres"
    assert head["chrono-source"] == quote(str(entry["source"]), safe="")
    (upload,) = entry["uploads"]  # type: ignore[misc]
    assert upload == {"target": "s3", "ok": True, "error": None, "uri": f"s3://{s3_bucket}/{PREFIX}/{name}"}
    assert seaweedfs.secret_key not in result.output and TEST_PASSWORD not in result.output


def test_keep_local_false_streams_to_s3_only(
    run_cli: Run, sample_url: str, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "KEEP_LOCAL": "false", **s3_env(seaweedfs, s3_bucket)}
    result = run_cli("backup", "postgres", "--verify", "restore", env=env)
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    assert entry["local"] is False
    assert not list(folder.glob("postgres_backup_*")) and not [
        p for p in folder.iterdir() if p.name.startswith(".chrono-tmp")
    ]
    assert list(objects(seaweedfs, s3_bucket)) == [entry["file"]]
    assert entry["verified"]["ok"] is True and entry["verified"]["level"] == "restore"  # type: ignore[index]


def test_list_test_and_restore_from_s3(
    run_cli: Run, sample_url: str, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(tmp_path / "backups"), **s3_env(seaweedfs, s3_bucket)}
    assert run_cli("backup", "postgres", env=env).code == 0
    # Another machine: an empty backup folder, only the bucket.
    elsewhere = {**env, "BACKUP_DIR": str(tmp_path / "elsewhere")}
    listed = run_cli("--json", "recovery", "list", "--from", "s3", env=elsewhere)
    assert listed.code == 0, listed.output
    (row,) = json.loads(listed.stdout)["archives"]
    assert row["kind"] == "postgres" and row["newest"] is True and row["sha256"]
    name = row["file"]
    tested = run_cli("recovery", "test", f"s3://{s3_bucket}/{PREFIX}/{name}", "--restore", env=elsewhere)
    assert tested.code == 0, tested.output
    import psycopg

    with psycopg.connect(sample_url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders")
    restored = run_cli("recovery", "restore", name, "--from", "s3", "--yes", env=elsewhere)
    assert restored.code == 0, restored.output
    with psycopg.connect(sample_url) as conn:
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone() == (EXPECTED_TABLES["app.orders"],)


def test_a_damaged_object_in_s3_is_refused(
    run_cli: Run, sample_url: str, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(tmp_path / "b"), **s3_env(seaweedfs, s3_bucket)}
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(tmp_path / "b")[0]["file"])
    client = seaweedfs.client()
    key = f"{PREFIX}/{name}"
    head = client.head_object(Bucket=s3_bucket, Key=key)
    body = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(body), Metadata=head["Metadata"])
    result = run_cli("recovery", "restore", name, "--from", "s3", "--yes", env=env)
    assert result.code == 7, result.output
    assert "does not match its recorded sha256" in result.output


def _seed_old(storage: S3Storage, source: str, when: datetime, key_suffix: str = "") -> str:
    name = f"postgres_backup_{when:%Y-%m-%d_%H-%M-%S}{key_suffix}.sql.zst"
    import io

    storage.put(
        name,
        # Above the size floor of a plausible archive (provenance.MIN_ARCHIVE_BYTES): a real backup's size.
        io.BytesIO((b"old archive " + name.encode()).ljust(1024, b".")),
        {
            "chrono-kind": "postgres",
            "chrono-series": "backup",
            "chrono-source": quote(source, safe=""),
            "chrono-created-at": when.isoformat().replace("+00:00", "Z"),
            "chrono-compression": "zstd",
        },
    )
    return name


def _storage(seaweedfs: SeaweedFS, bucket: str) -> S3Storage:
    return S3Storage(
        S3Config(bucket=bucket, prefix=PREFIX, endpoint_url=seaweedfs.endpoint_url, region=seaweedfs.region),
        session=seaweedfs.session(),
    )


def test_s3_retention_by_count_age_and_gfs_touches_only_our_archives(
    run_cli: Run, sample_url: str, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), **s3_env(seaweedfs, s3_bucket)}
    assert run_cli("backup", "postgres", env=env).code == 0
    source = str(entries(folder)[0]["source"])
    storage = _storage(seaweedfs, s3_bucket)
    now = datetime.now(UTC)
    # Weekly archives for ten weeks, plus three from the last days.
    weekly = [_seed_old(storage, source, now - timedelta(weeks=w, hours=1)) for w in range(1, 11)]
    recent = [_seed_old(storage, source, now - timedelta(days=d, hours=2), "_9") for d in (1, 2)]
    other_db = _seed_old(storage, "elsewhere:5432/other", now - timedelta(weeks=30))
    client = seaweedfs.client()
    client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/notes.txt", Body=b"not ours")
    client.put_object(
        Bucket=s3_bucket, Key=f"{PREFIX}/postgres_backup_2001-01-01_00-00-00.sql.zst", Body=b"no metadata"
    )

    dry = run_cli(
        "prune", "--from", "s3", "--dry-run", env={**env, "MAX_BACKUPS": "1", "RETENTION_DAYS": "3", "KEEP_WEEKLY": "4"}
    )
    assert dry.code == 0 and "would remove" in dry.stdout, dry.output
    assert len(objects(seaweedfs, s3_bucket)) == 1 + 10 + 2 + 1 + 2

    result = run_cli("backup", "postgres", env={**env, "MAX_BACKUPS": "1", "RETENTION_DAYS": "3", "KEEP_WEEKLY": "4"})
    assert result.code == 0, result.output
    left = set(objects(seaweedfs, s3_bucket))
    newest_two = {str(e["file"]) for e in entries(folder)}
    # Count keeps the new one; age keeps the last 3 days (the two recent and the first backup); GFS keeps the
    # newest of the 4 most recent weeks with archives, which the recent ones already cover for this week.
    assert newest_two <= left and set(recent) <= left
    assert other_db in left and "notes.txt" in left and "postgres_backup_2001-01-01_00-00-00.sql.zst" in left
    assert set(weekly[:2]) <= left  # the weeks 1 and 2 back are among the 4 newest weeks
    assert not set(weekly[4:]) & left
    assert "rotation on s3://" in result.stdout


def test_object_lock_is_reported_as_kept(run_cli: Run, sample_url: str, seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    bucket = f"chrono-lock-{os.getpid()}-{int(time.time())}"
    client = seaweedfs.client()
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1", **s3_env(seaweedfs, bucket)}
    assert run_cli("backup", "postgres", env=env).code == 0
    first = str(entries(folder)[0]["file"])
    client.put_object_retention(
        Bucket=bucket,
        Key=f"{PREFIX}/{first}",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=1)},
    )
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 0, result.output
    assert first in objects(seaweedfs, bucket)
    assert "under object lock" in result.stdout


def test_wrong_s3_credentials_stop_before_the_dump(
    run_cli: Run, sample_url: str, seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": sample_url,
        "BACKUP_DIR": str(folder),
        **s3_env(seaweedfs, s3_bucket),
        "AWS_SECRET_ACCESS_KEY": "wrong-secret-123",
    }
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 5, result.output
    assert "hint:" in result.output and "AWS_SECRET_ACCESS_KEY" in result.output
    assert "wrong-secret-123" not in result.output
    assert not list(folder.glob("postgres_backup_*"))


def test_s3_killed_during_the_upload(
    run_cli: Run,
    pg18: PgServer,
    make_database: Callable[..., str],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    # A ~200 MB archive, uploaded in ~25 parts, so the kill lands mid-upload.
    url = random_hex_database(pg18, make_database, 2_000_000)
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": url,
        "BACKUP_DIR": str(folder),
        "MAX_BACKUPS": "1",
        "S3_RETRY_DEADLINE": "8",  # the server stays down past it
        **s3_env(seaweedfs, s3_bucket),
    }
    first = run_cli("backup", "postgres", env=env)
    assert first.code == 0, first.output
    before = {str(e["file"]) for e in entries(folder)}
    proc = backup_until_the_multipart_upload_starts(env, seaweedfs, s3_bucket)
    seaweedfs.kill()
    try:
        output, _ = proc.communicate(timeout=180)
    finally:
        seaweedfs.restart()
    assert proc.returncode == 5, output
    assert "s3" in output and "hint:" in output and "Traceback" not in output
    # Retried, one line each, then stopped at the deadline with the endpoint, how long, the cause, what to do.
    assert f"warn S3 UploadPart at {seaweedfs.endpoint_url} failed (attempt 1, " in output
    assert f"{seaweedfs.endpoint_url} did not work for " in output and "; the last failure: " in output
    assert "raise S3_RETRY_DEADLINE" in output
    assert seaweedfs.secret_key not in output
    # The upload the dead server kept is on record for the next run.
    assert (folder / ".chrono-unfinished-uploads.json").exists()
    after = entries(folder)
    new = [e for e in after if e["file"] not in before]
    assert len(new) == 1 and (folder / str(new[0]["file"])).exists()  # the local archive is intact
    assert new[0]["uploads"][0]["ok"] is False  # type: ignore[index]
    assert str(new[0]["file"]) not in objects(seaweedfs, s3_bucket)  # no object that looks like the archive
    assert before <= {str(e["file"]) for e in after}  # nothing was rotated away after the failure
    # The next run aborts the upload the dead server kept: no orphan parts stay in the bucket.
    assert run_cli("backup", "postgres", env=env).code == 0
    assert unfinished_uploads(seaweedfs, s3_bucket) == []


def test_s3_killed_for_ten_seconds_during_the_upload_is_ridden_out(
    run_cli: Run,
    pg18: PgServer,
    make_database: Callable[..., str],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    # About 100 MB of archive in 8 MiB parts: the kill lands while parts are still going up.
    url = random_hex_database(pg18, make_database, 1_000_000)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder), "S3_RETRY_DEADLINE": "60", **s3_env(seaweedfs, s3_bucket)}
    proc = backup_until_the_multipart_upload_starts(env, seaweedfs, s3_bucket)
    seaweedfs.kill()  # in the middle of the multipart upload: it is listed, so not completed
    time.sleep(10)
    seaweedfs.start()
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    assert "retrying in" in output and "Traceback" not in output
    (entry,) = entries(folder)
    assert entry["uploads"][0]["ok"] is True  # type: ignore[index]
    # The object in the bucket is the archive: its sha256 is the record's, and the local copy's.
    (stored,) = objects(seaweedfs, s3_bucket).values()
    assert hashlib.sha256(stored).hexdigest() == entry["sha256"]
    assert hashlib.sha256((folder / str(entry["file"])).read_bytes()).hexdigest() == entry["sha256"]
    assert unfinished_uploads(seaweedfs, s3_bucket) == []


def test_backup_lands_in_s3_and_as_an_artifact_in_one_run(
    run_cli: Run,
    sample_url: str,
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    github_artifact_service: FakeArtifactService,
    tmp_path: Path,
) -> None:
    job = github_artifact_service.new_run()
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": sample_url,
        "BACKUP_DIR": str(folder),
        "BACKUP_UPLOAD": "s3,artifact",
        "ARTIFACT_RETENTION_DAYS": "5",
        **s3_env(seaweedfs, s3_bucket),
        **github_artifact_service.environ(job),
    }
    result = run_cli("--json", "backup", "postgres", env=env)
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    entry = document["backups"][0]
    s3_upload, artifact_upload = entry["uploads"]
    assert s3_upload["ok"] and artifact_upload["ok"] and artifact_upload["artifact_id"]
    name = entry["file"]
    # Without ARTIFACT_NAME, the artifact is named after the archive, and is the archive itself.
    assert artifact_upload["name"] == name
    artifact = github_artifact_service.artifact(job, name)
    assert (artifact.version, artifact.mime_type) == (7, "application/zstd")
    assert artifact.data == (folder / name).read_bytes() == objects(seaweedfs, s3_bucket)[name]
    assert hashlib.sha256(artifact.data).hexdigest() == entry["sha256"]
    downloaded = make_artifact_storage(github_artifact_service, job).open(name).read()
    assert downloaded == artifact.data
    assert job.token not in result.output


def test_artifact_name_gets_a_suffix_only_when_several_databases_are_backed_up(
    run_cli: Run, sample_url: str, github_artifact_service: FakeArtifactService, tmp_path: Path
) -> None:
    """`backup all` (the Action's databases: all) with one database configured uploads under ARTIFACT_NAME as
    given, with the archive's extension; with a second one configured, each database's artifact gets -KIND
    appended before it."""
    env = {"DATABASE_URL": sample_url, "BACKUP_UPLOAD": "artifact", "ARTIFACT_NAME": "nightly"}
    job = github_artifact_service.new_run()
    alone = run_cli(
        "--json",
        "backup",
        "all",
        env={**env, "BACKUP_DIR": str(tmp_path / "a"), **github_artifact_service.environ(job)},
    )
    assert alone.code == 0, alone.output
    (upload,) = json.loads(alone.stdout)["backups"][0]["uploads"]
    assert upload["ok"] and upload["name"] == "nightly.sql.zst"
    # A second database (unreachable here: its failure does not stop the first) makes two archives in one run.
    job = github_artifact_service.new_run()
    both = run_cli(
        "backup",
        "all",
        "--json",
        env={
            **env,
            "SUPABASE_DB_URL": "postgresql://postgres@127.0.0.1:1/postgres",
            "BACKUP_DIR": str(tmp_path / "b"),
            **github_artifact_service.environ(job),
        },
    )
    assert both.code != 0, both.output
    document = json.loads(both.stdout)
    (upload,) = document["backups"][0]["uploads"]
    assert upload["ok"] and upload["name"] == "nightly-postgres.sql.zst"
    assert [failure["kind"] for failure in document["failed"]] == ["supabase"]


def test_an_artifact_name_already_used_fails_clearly_and_keeps_the_local_archive(
    run_cli: Run, sample_url: str, github_artifact_service: FakeArtifactService, tmp_path: Path
) -> None:
    job = github_artifact_service.new_run()
    other_job = github_artifact_service.new_job(job.run_backend_id, run_id=job.run_id)
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": sample_url,
        "BACKUP_DIR": str(folder),
        "BACKUP_UPLOAD": "artifact",
        "ARTIFACT_NAME": "db-backup",
    }
    first = run_cli("backup", "postgres", env={**env, **github_artifact_service.environ(other_job)})
    assert first.code == 0, first.output
    second = run_cli("backup", "postgres", env={**env, **github_artifact_service.environ(job)})
    assert second.code == 5, second.output
    assert "unique per workflow run" in second.output or "already" in second.output
    files = sorted(folder.glob("postgres_backup_*"))
    assert len(files) == 2 and len(entries(folder)) == 2


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")
def test_the_artifact_a_backup_uploads_downloads_as_the_archive_itself(
    run_cli: Run, sample_url: str, github_artifact_service: FakeArtifactService, tmp_path: Path
) -> None:
    """What a person gets from the artifact's link (the signed URL's plain GET): the .sql.zst, under its name."""
    job = github_artifact_service.new_run()
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_UPLOAD": "artifact"}
    result = run_cli("--json", "backup", "postgres", env={**env, **github_artifact_service.environ(job)})
    assert result.code == 0, result.output
    entry = json.loads(result.stdout)["backups"][0]
    (upload,) = entry["uploads"]

    url = signed_download_url(github_artifact_service, job, upload["name"])
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=30) as response:
        disposition = response.headers["Content-Disposition"]
        content_type = response.headers["Content-Type"]
        body = response.read()
    file_name = urllib.parse.unquote(disposition.split("filename*=UTF-8''")[1])
    assert file_name == entry["file"] and file_name.endswith(".sql.zst")
    assert content_type == "application/zstd"
    downloaded = tmp_path / "download" / file_name
    downloaded.parent.mkdir()
    downloaded.write_bytes(body)
    assert body == (folder / entry["file"]).read_bytes()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"] and len(body) == entry["size_bytes"]
    tested = subprocess.run(["zstd", "-t", str(downloaded)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stderr
    sql = subprocess.run(["zstd", "-d", "-c", str(downloaded)], capture_output=True, check=True).stdout
    assert b"PostgreSQL database dump complete" in sql


def test_keep_local_false_streams_to_an_artifact_and_checks_it_read_back(
    run_cli: Run, sample_url: str, github_artifact_service: FakeArtifactService, tmp_path: Path
) -> None:
    """With no local copy, the new archive is checked as the artifact holds it, found under its given name."""
    job = github_artifact_service.new_run()
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": sample_url,
        "BACKUP_DIR": str(folder),
        "BACKUP_UPLOAD": "artifact",
        "KEEP_LOCAL": "false",
        "ARTIFACT_NAME": "nightly",
    }
    result = run_cli("--json", "backup", "postgres", env={**env, **github_artifact_service.environ(job)})
    assert result.code == 0, result.output
    entry = json.loads(result.stdout)["backups"][0]
    (upload,) = entry["uploads"]
    assert upload["ok"] and upload["name"] == "nightly.sql.zst"
    assert not (folder / entry["file"]).exists()
    data = github_artifact_service.artifact(job, "nightly.sql.zst").data
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size_bytes"]
    assert len(github_artifact_service.blob_calls("GetBlob")) == 1, "the check read the artifact back"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nightly:db", "Invalid artifact name 'nightly:db.sql.zst': it contains colon (:)"),
        (
            "x" * 248,
            "The artifact name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... is 256 bytes long, more than 255.",
        ),
    ],
    ids=["forbidden-character", "too-long-with-the-extension"],
)
def test_an_artifact_name_the_service_refuses_stops_before_the_dump(
    run_cli: Run,
    sample_url: str,
    github_artifact_service: FakeArtifactService,
    tmp_path: Path,
    name: str,
    message: str,
) -> None:
    job = github_artifact_service.new_run()
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_UPLOAD": "artifact", "ARTIFACT_NAME": name}
    result = run_cli("backup", "postgres", env={**env, **github_artifact_service.environ(job)})
    assert result.code == 2, result.output
    assert message in result.output and "hint:" in result.output
    assert github_artifact_service.calls == [], "nothing was sent to the service"
    assert not list(folder.glob("postgres_backup_*")), "nothing was dumped"


def test_artifact_upload_outside_a_container_action(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    result = run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "BACKUP_UPLOAD": "artifact"})
    assert result.code in (2, 5), result.output
    assert "run:" in result.output and "composite" in result.output
