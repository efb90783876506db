"""Backups end to end through the real command, against real PostgreSQL servers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import zstandard

from chrono_ci.config.settings import resolve_settings
from chrono_ci.jobs.backup import run_backup
from chrono_ci.report.console import Reporter
from chrono_ci.source.embedded import EmbeddedServer, embedded_bin_dir, free_port
from tests.fixtures.postgres import TEST_PASSWORD, CliResult, PgServer
from tests.sample import EXPECTED_TABLES, SAMPLE_SQL

NAME = re.compile(r"^postgres_backup_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\d+)?\.sql\.zst$")
Run = Callable[..., CliResult]


def archives(folder: Path, pattern: str = "postgres_backup_*") -> list[Path]:
    return sorted(folder.glob(pattern))


def manifest(folder: Path) -> list[dict[str, object]]:
    return json.loads((folder / "backup_metadata.json").read_text())["backups"]  # type: ignore[no-any-return]


def count_rows(url: str, table: str) -> int:
    schema, name = table.split(".", 1)
    with psycopg.connect(url) as conn:
        ident = f'"{schema}"."{name}"'
        row = conn.execute(f"SELECT count(*) FROM {ident}").fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0])


@pytest.fixture
def sample_url(pg18: PgServer, make_database: Callable[..., str]) -> str:
    return make_database(pg18, SAMPLE_SQL)


def test_guide_test_1_backup_exists_compressed_and_valid(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    result = run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    files = archives(folder)
    assert len(files) == 1 and NAME.match(files[0].name)
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "integrity check passed" in result.stdout
    assert TEST_PASSWORD not in result.output and quote(TEST_PASSWORD, safe="") not in result.output

    # The guide's step 3: the integrity test on what step 1 made.
    tested = run_cli("backup", "test", env={"BACKUP_DIR": str(folder)})
    assert tested.code == 0, tested.output
    assert f"{files[0].name}: valid" in tested.stdout

    # Plain-format SQL inside, with the trailer, readable by the standard zstd tool.
    sql = zstandard.ZstdDecompressor().decompressobj().decompress(files[0].read_bytes())
    assert b"-- PostgreSQL database dump complete" in sql
    assert b"CREATE TABLE app.users" in sql


def test_metadata_records_what_was_dumped(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    result = run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    (entry,) = manifest(folder)
    path = folder / str(entry["file"])
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["size_bytes"] == path.stat().st_size
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    assert entry["raw_size_bytes"] == len(raw)
    assert entry["tables"] == EXPECTED_TABLES
    for table, rows in EXPECTED_TABLES.items():
        assert count_rows(sample_url, table) == rows
    assert entry["kind"] == "postgres"
    assert entry["host"] == "127.0.0.1"
    assert entry["compression"] == "zstd" and entry["format"] == "plain"
    assert str(entry["server_version"]).startswith("18.")
    assert str(entry["pg_dump_version"]).startswith("18.")
    assert isinstance(entry["duration_seconds"], float)
    assert entry["verified"] == {"level": "check", "ok": True, "at": entry["verified"]["at"]}  # type: ignore[index]
    created = datetime.fromisoformat(str(entry["created_at"]).replace("Z", "+00:00"))
    assert created.tzinfo is not None and abs((datetime.now(UTC) - created).total_seconds()) < 120
    assert entry["tool_version"]
    text = (folder / "backup_metadata.json").read_text()
    assert TEST_PASSWORD not in text and quote(TEST_PASSWORD, safe="") not in text


def test_json_output_is_one_document(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    result = run_cli("--json", "backup", "postgres", env={"DATABASE_URL": sample_url})
    assert result.code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["backups"][0]["tables"] == EXPECTED_TABLES


def test_guide_test_4_rotation_keeps_max_backups(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "3"}
    made: list[str] = []
    for _ in range(5):
        result = run_cli("backup", "postgres", env=env)
        assert result.code == 0, result.output
        made.append(str(manifest(folder)[-1]["file"]))
    remaining = [p.name for p in archives(folder)]
    assert remaining == sorted(made[-3:])
    assert [e["file"] for e in manifest(folder)] == made[-3:]
    assert "removed" in result.stdout and made[1] in result.stdout


def test_rotation_is_per_database(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    first, second = (
        make_database(pg18, "CREATE TABLE a (x int)"),
        make_database(pg18, "CREATE TABLE b (x int)"),
    )
    for url in (first, second, first, second):
        result = run_cli("backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1"})
        assert result.code == 0, result.output
    databases = sorted(str(e["database"]) for e in manifest(folder))
    assert databases == sorted([first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]])
    assert len(archives(folder)) == 2


def test_rotation_never_touches_files_it_did_not_write(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    foreign = [folder / "postgres_backup_2000-01-01_00-00-00.sql.zst", folder / "notes.txt"]
    for path in foreign:
        path.write_bytes(b"not ours")
    for _ in range(3):
        result = run_cli(
            "backup",
            "postgres",
            env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1"},
        )
        assert result.code == 0, result.output
    assert all(path.exists() for path in foreign)
    assert len(archives(folder)) == 2  # ours (1) + the foreign look-alike


@pytest.mark.parametrize(("compression", "suffix"), [("gzip", ".sql.gz"), ("none", ".sql")])
def test_other_compressions(run_cli: Run, sample_url: str, tmp_path: Path, compression: str, suffix: str) -> None:
    folder = tmp_path / "backups"
    result = run_cli(
        "backup",
        "postgres",
        env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_COMPRESSION": compression},
    )
    assert result.code == 0, result.output
    (path,) = archives(folder)
    assert path.name.endswith(suffix) and not path.name.endswith(".zst")
    data = gzip.decompress(path.read_bytes()) if compression == "gzip" else path.read_bytes()
    assert b"-- PostgreSQL database dump complete" in data[-4096:]
    if compression == "gzip":
        assert subprocess.run(["gzip", "-t", str(path)], check=False).returncode == 0
    assert run_cli("backup", "test", env={"BACKUP_DIR": str(folder)}).code == 0


def test_compress_backups_false_means_none(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    result = run_cli(
        "backup",
        "postgres",
        env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "COMPRESS_BACKUPS": "false"},
    )
    assert result.code == 0, result.output
    assert [p.suffix for p in archives(folder)] == [".sql"]


def test_same_second_never_overwrites(pg18: PgServer, sample_url: str, tmp_path: Path) -> None:
    quiet = Reporter(stream=io.StringIO())
    settings = resolve_settings({"backup_dir": str(tmp_path / "b")}, {"DATABASE_URL": sample_url})
    frozen = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    names = [run_backup(settings, "postgres", quiet, clock=lambda: frozen).path.name for _ in range(2)]
    assert names == [
        "postgres_backup_2026-01-02_03-04-05.sql.zst",
        "postgres_backup_2026-01-02_03-04-05_2.sql.zst",
    ]
    assert len(manifest(tmp_path / "b")) == 2


def test_two_backups_at_once_on_one_folder(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder)}
    results: list[CliResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(run_cli("backup", "postgres", env=env))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.code for r in results] == [0, 0, 0], [r.output for r in results]
    entries = manifest(folder)
    assert len(entries) == 3 and len({e["file"] for e in entries}) == 3
    assert len(archives(folder)) == 3


def test_empty_database_is_a_valid_small_backup(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    result = run_cli("backup", "postgres", env={"DATABASE_URL": make_database(pg18), "BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    (entry,) = manifest(folder)
    assert entry["tables"] == {} and int(entry["size_bytes"]) > 0  # type: ignore[call-overload]


def test_pg_dump_18_backs_up_postgres_15(
    run_cli: Run, pg15: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg15, SAMPLE_SQL)
    folder = tmp_path / "backups"
    bin18 = embedded_bin_dir()
    assert bin18 is not None
    result = run_cli(
        "backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(folder), "PG_BIN_DIR": str(bin18)}
    )
    assert result.code == 0, result.output
    (entry,) = manifest(folder)
    assert str(entry["server_version"]).startswith("15.") and str(entry["pg_dump_version"]).startswith("18.")
    assert entry["tables"] == EXPECTED_TABLES


def test_same_major_pg_dump_is_preferred(
    run_cli: Run, pg15: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    if not Path("/usr/lib/postgresql/15/bin/pg_dump").exists():
        pytest.skip("needs Debian's pg_dump 15 beside the embedded 18")
    result = run_cli("backup", "postgres", env={"DATABASE_URL": make_database(pg15, "CREATE TABLE t (x int)")})
    assert result.code == 0, result.output
    assert "pg_dump 15." in result.stdout


# ---- errors: each provoked for real, each with its exit code and a hint ----


def assert_error(result: CliResult, code: int, *needles: str) -> None:
    assert result.code == code, result.output
    assert "error:" in result.output and "hint:" in result.output, result.output
    for needle in needles:
        assert needle in result.output, result.output
    assert "Traceback" not in result.output


def assert_nothing_written(folder: Path) -> None:
    assert not folder.exists() or not [p for p in folder.iterdir() if not p.name.startswith(".")], list(
        folder.iterdir()
    )


def test_pg_dump_too_old_for_the_server_is_refused(
    run_cli: Run, pg18: PgServer, sample_url: str, tmp_path: Path
) -> None:
    if not Path("/usr/lib/postgresql/15/bin/pg_dump").exists():
        pytest.skip("needs Debian's pg_dump 15 (apt-get install postgresql-client-15)")
    folder = tmp_path / "backups"
    result = run_cli(
        "backup",
        "postgres",
        env={
            "DATABASE_URL": sample_url,
            "BACKUP_DIR": str(folder),
            "PG_BIN_DIR": "/usr/lib/postgresql/15/bin",
        },
    )
    assert_error(result, 4, "PostgreSQL 18", "15.", "chrono-ci[embedded]")
    assert not archives(folder)


def test_pg_dump_missing(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    result = run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "PG_BIN_DIR": str(empty)})
    assert_error(result, 4, "pg_dump was not found", str(empty))


def test_connection_refused(run_cli: Run, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    result = run_cli(
        "backup",
        "postgres",
        env={
            "DATABASE_URL": f"postgresql://u:secretpw@127.0.0.1:{free_port()}/db",
            "BACKUP_DIR": str(folder),
        },
    )
    assert_error(result, 3, "Connection refused")
    assert "secretpw" not in result.output
    assert_nothing_written(folder)


def test_wrong_password(run_cli: Run, pg18: PgServer, sample_url: str) -> None:
    bad = sample_url.replace(quote(TEST_PASSWORD, safe=""), "wr%40ng-pa55")
    result = run_cli("backup", "postgres", env={"DATABASE_URL": bad})
    assert_error(result, 3, "Wrong password")
    assert "wr@ng-pa55" not in result.output and "wr%40ng-pa55" not in result.output


def test_unknown_database(run_cli: Run, pg18: PgServer) -> None:
    result = run_cli("backup", "postgres", env={"DATABASE_URL": pg18.url("no_such_db")})
    assert_error(result, 3, "does not exist")


def test_unknown_host(run_cli: Run) -> None:
    result = run_cli("backup", "postgres", env={"DATABASE_URL": "postgresql://u:pw@no-such-host.invalid:5432/db"})
    assert_error(result, 3, "no-such-host.invalid")


def test_database_url_not_set(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("backup", "postgres", env={"BACKUP_DIR": str(tmp_path / "b")})
    assert_error(result, 2, "DATABASE_URL is not set")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"MAX_BACKUPS": "abc"}, ["MAX_BACKUPS", "'abc'"]),
        ({"MAX_BACKUPS": "-1"}, ["MAX_BACKUPS", "'-1'"]),
        ({"MAX_BACKUPS": "0"}, ["MAX_BACKUPS", "'0'"]),
        ({"BACKUP_COMPRESSION": "lz4"}, ["BACKUP_COMPRESSION", "'lz4'"]),
        ({"COMPRESS_BACKUPS": "maybe"}, ["COMPRESS_BACKUPS", "'maybe'"]),
        ({"DATABASE_URL": "mysql://u:pw@h/db"}, ["DATABASE_URL", "not a PostgreSQL URL"]),
        ({"DATABASE_URL": "postgresql://u:pw@host:5432"}, ["DATABASE_URL", "names no database"]),
        ({"DATABASE_URL": "postgresql://u:pw@[::1:5432/db"}, ["DATABASE_URL", "not a valid URL"]),
    ],
)
def test_bad_settings_stop_before_anything_runs(
    run_cli: Run, tmp_path: Path, env: dict[str, str], needles: list[str]
) -> None:
    folder = tmp_path / "b"
    full = {"DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/db", "BACKUP_DIR": str(folder), **env}
    result = run_cli("backup", "postgres", env=full)
    assert_error(result, 2, *needles)
    assert not folder.exists()
    assert ":pw@" not in result.output


def test_password_on_the_command_line_is_refused(run_cli: Run) -> None:
    result = run_cli("backup", "postgres", "--database-url", "postgresql://u:topsecret@127.0.0.1/db")
    assert_error(result, 2, "--database-url", "DATABASE_URL")
    assert "topsecret" not in result.output


@contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700" + (",ro" if readonly else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_backup_dir_not_writable(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as folder:
        result = run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder / "backups")})
        assert_error(result, 5, "Permission denied", "BACKUP_DIR")


def test_backup_dir_is_a_file(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    result = run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(target)})
    assert_error(result, 5, "is a file")
    assert target.read_text() == "x"


def test_disk_full_removes_the_partial_archive(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    # ~3 MB of incompressible data cannot fit in a 1 MB tmpfs.
    url = make_database(
        pg18,
        "CREATE TABLE blob AS SELECT g, md5(random()::text) || md5(random()::text) AS h "
        "FROM generate_series(1, 60000) g",
    )
    with tmpfs(tmp_path / "full", "1m") as folder:
        previous = folder / "backup_metadata.json"
        result = run_cli("backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(folder)})
        assert_error(result, 5, "disk", "full")
        assert [p.name for p in folder.iterdir()] in ([], [".backup_metadata.lock"]), list(folder.iterdir())
        assert not previous.exists()


def test_server_stopped_during_the_dump(run_cli: Run, tmp_path: Path) -> None:
    """pg_dump failing mid-way: no archive left, metadata unchanged, rotation not run."""
    folder = tmp_path / "backups"
    with EmbeddedServer(password=TEST_PASSWORD) as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 8) AS t FROM generate_series(1, 1500000) g"
            )
        env = {"DATABASE_URL": server.url(), "BACKUP_DIR": str(folder), "MAX_BACKUPS": "1"}
        first = run_cli("backup", "postgres", env=env)
        assert first.code == 0, first.output
        before = (folder / "backup_metadata.json").read_bytes()
        kept = archives(folder)

        import sys

        proc = subprocess.Popen(
            [sys.executable, "-m", "chrono_ci", "backup", "postgres"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            temps = [p for p in folder.iterdir() if p.name.startswith(".chrono-tmp-")]
            if temps and temps[0].stat().st_size > 0:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the dump never started writing")
        server.kill()
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 6, output
        assert "pg_dump failed" in output and "hint:" in output
        assert archives(folder) == kept
        assert (folder / "backup_metadata.json").read_bytes() == before
        assert not [p for p in folder.iterdir() if p.name.startswith(".chrono-tmp-")]


def test_backup_all_without_supabase_is_a_notice(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    result = run_cli("backup", "all", env={"DATABASE_URL": sample_url})
    assert result.code == 0, result.output
    assert "SUPABASE_DB_URL is not set" in result.stdout


def test_backup_all_goes_on_after_a_failure(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    refused = f"postgresql://u:pw@127.0.0.1:{free_port()}/db"
    result = run_cli(
        "backup",
        "all",
        env={"DATABASE_URL": refused, "SUPABASE_DB_URL": sample_url, "BACKUP_DIR": str(folder)},
    )
    assert result.code == 3, result.output
    assert archives(folder, "supabase_backup_*") and not archives(folder)
    assert "1 of 2 backup(s) FAILED" in result.stdout


def test_backup_supabase_dumps_as_plain_postgres(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    result = run_cli("backup", "supabase", env={"SUPABASE_DB_URL": sample_url, "BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    (entry,) = manifest(folder)
    assert entry["kind"] == "supabase" and str(entry["file"]).startswith("supabase_backup_")


def test_backup_test_fails_on_a_damaged_archive(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    assert run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder)}).code == 0
    (path,) = archives(folder)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = run_cli("backup", "test", env={"BACKUP_DIR": str(folder)})
    assert result.code == 7, result.output
    assert "FAIL" in result.stdout


def test_backup_test_with_nothing_to_test(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("backup", "test", env={"BACKUP_DIR": str(tmp_path / "none")})
    assert_error(result, 5, "No backup to test")


def test_password_never_reaches_pg_dump_argv(pg18: PgServer, sample_url: str, tmp_path: Path) -> None:
    from chrono_ci.dump.pg_dump import DumpProcess
    from chrono_ci.source.target import parse_database_url, probe_server
    from chrono_ci.source.tools import choose_pg_tools

    target = parse_database_url(sample_url)
    dump = DumpProcess(choose_pg_tools(probe_server(target)), target)
    try:
        cmdline = Path(f"/proc/{dump.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert TEST_PASSWORD not in cmdline and quote(TEST_PASSWORD, safe="") not in cmdline
        assert TEST_PASSWORD not in " ".join(dump.args)
    finally:
        dump.kill()


def test_help_on_every_command(run_cli: Run) -> None:
    for args in (
        ["--help"],
        ["backup", "--help"],
        ["backup", "postgres", "--help"],
        ["backup", "all", "--help"],
        ["backup", "supabase", "--help"],
        ["backup", "test", "--help"],
        ["demo", "--help"],
    ):
        result = run_cli(*args)
        assert result.code == 0 and "Usage" in result.stdout, (args, result.output)
