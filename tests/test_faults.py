"""Faults survived and hostile input refused: each a real fault, each ending with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.postgres import CliResult, PgServer
from tests.test_backup import assert_error, tmpfs
from tests.test_recovery import entries, state

Run = Callable[..., CliResult]
BIG_TABLE = "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS h FROM generate_series(1, 1500000) g"


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chrono_ci", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def peak_memory_mb(proc: subprocess.Popen[str]) -> float:
    """VmHWM of that one process (its children excluded), polled until it exits."""
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.02)
    return peak / 1024


def test_sigterm_during_a_backup(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    """What a cancelled workflow sends: temp files removed, metadata unchanged, exit 143, no pg_dump left."""
    url = make_database(pg18, BIG_TABLE)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder)}
    assert run_cli("backup", "postgres", env=env).code == 0
    before = (folder / "backup_metadata.json").read_bytes()
    kept = sorted(p.name for p in folder.iterdir())
    proc = start(["backup", "postgres"], env)
    wait_for(
        lambda: any(p.name.startswith(".chrono-tmp-") and p.stat().st_size > 0 for p in folder.iterdir()), "the dump"
    )
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    assert "Stopped by signal SIGTERM" in output and "Traceback" not in output
    assert sorted(p.name for p in folder.iterdir()) == kept
    assert (folder / "backup_metadata.json").read_bytes() == before
    dbname = url.rsplit("/", 1)[1]
    wait_for(
        lambda: (
            not pg18.execute(
                f"SELECT 1 FROM pg_stat_activity WHERE datname = '{dbname}' AND application_name = 'pg_dump'"
            )
        ),
        "pg_dump to be gone",
        timeout=10,
    )


def test_sigkill_during_a_restore(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    """chrono-ci killed outright: its transaction is never committed; the safety backup is on disk."""
    url = make_database(pg18, BIG_TABLE)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder)}
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(folder)[-1]["file"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM big WHERE g > 100")
        conn.execute("CREATE TABLE after_backup (x int)")
    before = state(url)
    proc = start(["recovery", "restore", name, "--yes"], env)
    dbname = url.rsplit("/", 1)[1]
    wait_for(
        lambda: bool(
            pg18.execute(
                f"SELECT 1 FROM pg_stat_activity WHERE datname = '{dbname}' AND application_name = 'chrono-ci restore' "
                "AND state <> 'idle'"
            )
        ),
        "chrono-ci to start restoring",
    )
    time.sleep(0.1)  # inside the data by now, and far from its end
    proc.kill()
    proc.communicate(timeout=30)
    # The connection drops with the transaction open: the server rolls back.
    wait_for(
        lambda: (
            not pg18.execute(
                f"SELECT 1 FROM pg_stat_activity WHERE datname = '{dbname}' AND application_name = 'chrono-ci restore'"
            )
        ),
        "the restore session to end",
    )
    assert state(url) == before
    safety = [e for e in entries(folder) if e["series"] == "safety"]
    assert len(safety) == 1 and (folder / str(safety[0]["file"])).is_file()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"backups": "nope"}', b'{"backups": [{"no_file": 1}]}', b"", b"\xff\xfe garbage"],
)
def test_a_damaged_manifest_is_never_trusted(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path, content: bytes
) -> None:
    url = make_database(pg18, "CREATE TABLE t (x int)")
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1"}
    assert run_cli("backup", "postgres", env=env).code == 0
    (folder / "backup_metadata.json").write_bytes(content)
    files = sorted(p.name for p in folder.iterdir())
    for args in (["backup", "postgres"], ["recovery", "list"], ["backup", "test"], ["prune"]):
        result = run_cli(*args, env=env)
        assert_error(result, 5, "backup_metadata.json", "damaged")
        assert sorted(p.name for p in folder.iterdir()) == files, args
        assert (folder / "backup_metadata.json").read_bytes() == content


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size_bytes", "12kB"),
        ("size_bytes", True),
        ("series", ["backup"]),
        ("source", 5432),
        ("tables", {"public.t": "many"}),
        ("created_at", 20260101),
        ("local", "yes"),
        ("uploads", ["s3"]),
        ("verified", "ok"),
    ],
)
def test_a_manifest_field_of_the_wrong_type_is_a_clear_error(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path, field: str, value: object
) -> None:
    url = make_database(pg18, "CREATE TABLE t (x int)")
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1"}
    assert run_cli("backup", "postgres", env=env).code == 0
    manifest = json.loads((folder / "backup_metadata.json").read_text())
    manifest["backups"][0][field] = value
    content = json.dumps(manifest).encode()
    (folder / "backup_metadata.json").write_bytes(content)
    files = sorted(p.name for p in folder.iterdir())
    for args in (["backup", "postgres"], ["recovery", "list"], ["backup", "test"], ["prune"], ["status"]):
        result = run_cli(*args, env=env)
        assert_error(result, 5, "backup_metadata.json is damaged", f"entry 0 has {field} of the wrong type")
        assert sorted(p.name for p in folder.iterdir()) == files, args
        assert (folder / "backup_metadata.json").read_bytes() == content


def test_a_hand_edited_manifest_cannot_make_chrono_ci_delete_foreign_files(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    url = make_database(pg18, "CREATE TABLE t (x int)")
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1"}
    assert run_cli("backup", "postgres", env=env).code == 0
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (folder / "notes.sql.zst").write_text("not an archive name")
    manifest = json.loads((folder / "backup_metadata.json").read_text())
    source = manifest["backups"][0]["source"]
    for name in ("../precious.txt", "notes.sql.zst", str(victim)):
        manifest["backups"].insert(
            0, {"file": name, "kind": "postgres", "source": source, "created_at": "2000-01-01T00:00:00Z"}
        )
    (folder / "backup_metadata.json").write_text(json.dumps(manifest))
    for _ in range(2):
        assert run_cli("backup", "postgres", env=env).code == 0
    assert victim.read_text() == "keep me" and (folder / "notes.sql.zst").exists()


def test_unicode_database_schema_and_table_names(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    url = make_database(
        pg18,
        'CREATE SCHEMA "schéma ünïcode"; CREATE TABLE "schéma ünïcode"."tâble 日本" ("colonne é" text);'
        "INSERT INTO \"schéma ünïcode\".\"tâble 日本\" VALUES ('一'), ('二');",
        name="base_données_日本",
    )
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder)}
    result = run_cli("backup", "postgres", "--verify", "restore", env=env)
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    assert entry["database"] == "base_données_日本"
    assert entry["tables"] == {"schéma ünïcode.tâble 日本": 2}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('TRUNCATE "schéma ünïcode"."tâble 日本"')
    restored = run_cli("recovery", "restore", str(entry["file"]), "--yes", env=env)
    assert restored.code == 0, restored.output
    with psycopg.connect(url) as conn:
        assert conn.execute('SELECT count(*) FROM "schéma ünïcode"."tâble 日本"').fetchone() == (2,)


def test_a_200_mb_value_within_the_memory_target(
    pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18, "CREATE TABLE huge AS SELECT 1 AS id, repeat(md5('x'), 200 * 1024 * 1024 / 32) AS v")
    folder = tmp_path / "backups"
    proc = start(["backup", "postgres"], {"DATABASE_URL": url, "BACKUP_DIR": str(folder)})
    peak = peak_memory_mb(proc)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    (entry,) = entries(folder)
    assert entry["tables"] == {"public.huge": 1}
    assert int(entry["raw_size_bytes"]) > 200 * 1024 * 1024  # type: ignore[call-overload]
    assert peak < 64, f"chrono-ci's peak memory was {peak:.0f} MB"


def test_backup_dir_symlink_to_an_unwritable_place(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    url = make_database(pg18, "CREATE TABLE t (x int)")
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as readonly:
        link = tmp_path / "backups"
        link.symlink_to(readonly)
        result = run_cli("backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(link)})
        assert_error(result, 5, "Permission denied")


@pytest.mark.parametrize("name", ["bad:name", "a/b", 'quote"d', "star*", "new\nline"])
def test_artifact_names_with_forbidden_characters(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, name: str
) -> None:
    url = make_database(pg18, "CREATE TABLE t (x int)")
    result = run_cli(
        "backup",
        "postgres",
        env={
            "DATABASE_URL": url,
            "BACKUP_UPLOAD": "artifact",
            "ARTIFACT_NAME": name,
            "ACTIONS_RUNTIME_TOKEN": "x.e30.y",
            "ACTIONS_RESULTS_URL": "http://127.0.0.1:1/",
        },
    )
    assert result.code == 2, result.output
    assert "hint:" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_BACKUPS", "0"),
        ("MAX_BACKUPS", "-3"),
        ("RETENTION_DAYS", "0"),
        ("RETENTION_DAYS", "x"),
        ("KEEP_DAILY", "-1"),
        ("KEEP_MONTHLY", "1.5"),
    ],
)
def test_retention_values_must_be_whole_numbers(run_cli: Run, variable: str, value: str) -> None:
    result = run_cli("backup", "postgres", env={"DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/db", variable: value})
    assert_error(result, 2, variable, repr(value))
