"""recovery list / test / restore against real servers: the guide's Tests 2 and 3, and everything that must
leave a target exactly as it was."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from chrono_ci.source.embedded import embedded_bin_dir
from tests.fixtures.postgres import CliResult, PgServer
from tests.sample import EXPECTED_TABLES, SAMPLE_SQL

Run = Callable[..., CliResult]

RICH_SQL = """
CREATE SCHEMA billing;
CREATE TYPE billing.status AS ENUM ('open', 'paid', 'void');
CREATE DOMAIN billing.positive AS numeric CHECK (VALUE > 0);
CREATE SEQUENCE billing.invoice_no START 1000;
CREATE TABLE billing.invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    no integer NOT NULL DEFAULT nextval('billing.invoice_no'),
    amount billing.positive NOT NULL,
    vat numeric GENERATED ALWAYS AS (amount * 0.2) STORED,
    status billing.status NOT NULL DEFAULT 'open',
    updated_at timestamptz
);
COMMENT ON TABLE billing.invoices IS 'one row per invoice';
CREATE FUNCTION billing.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := '2020-01-01'; RETURN NEW; END $$;
CREATE TRIGGER invoices_touch BEFORE UPDATE ON billing.invoices FOR EACH ROW EXECUTE FUNCTION billing.touch();
INSERT INTO billing.invoices (amount, status) SELECT g, (ARRAY['open','paid','void'])[1 + g % 3]::billing.status
    FROM generate_series(1, 300) g;
UPDATE billing.invoices SET status = 'paid' WHERE id % 10 = 0;
CREATE VIEW billing.open_invoices AS SELECT id, amount FROM billing.invoices WHERE status = 'open';
CREATE MATERIALIZED VIEW billing.totals AS SELECT status, sum(amount) AS total FROM billing.invoices GROUP BY status;
CREATE TABLE public.events (id int, at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO public.events SELECT g, DATE '2025-06-01' + g, 'e' || g FROM generate_series(1, 400) g;
CREATE ROLE chrono_reader;
GRANT USAGE ON SCHEMA billing TO chrono_reader;
GRANT SELECT ON billing.invoices TO chrono_reader;
SELECT setval('billing.invoice_no', 5000);
"""


def entries(folder: Path) -> list[dict[str, object]]:
    return json.loads((folder / "backup_metadata.json").read_text())["backups"]  # type: ignore[no-any-return]


def pg_tool(name: str) -> str:
    folder = embedded_bin_dir()
    assert folder is not None
    return str(folder / name)


def schema_dump(url: str) -> str:
    """pg_dump --schema-only, without the lines that differ between any two dumps (restrict keys)."""
    out = subprocess.run(
        [pg_tool("pg_dump"), "--schema-only", "--no-password", "-d", "postgres"],
        env=_libpq_env(url),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def _libpq_env(url: str) -> dict[str, str]:
    from chrono_ci.source.target import parse_database_url

    return parse_database_url(url).libpq_env()


def table_fingerprints(url: str) -> dict[str, str]:
    """md5 of every user table's rows in a stable order, and every sequence's value."""
    prints: dict[str, str] = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'S', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchall()
        for schema, name, kind in tables:
            ident = f'"{schema}"."{name}"'
            if kind == "S":
                row = conn.execute(f"SELECT last_value::text FROM {ident}").fetchone()  # type: ignore[arg-type]
            else:
                row = conn.execute(  # type: ignore[call-overload]
                    f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {ident} t"
                ).fetchone()
            prints[f"{schema}.{name}"] = str(row[0]) if row else ""
    return prints


def state(url: str) -> tuple[str, dict[str, str]]:
    return schema_dump(url), table_fingerprints(url)


def folder_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


@pytest.fixture
def backed_up(run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path) -> tuple[str, Path, str]:
    """(database URL, backup folder, archive name) of a fresh sample database and its backup."""
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    result = run_cli("backup", "postgres", env={"DATABASE_URL": url, "BACKUP_DIR": str(folder)})
    assert result.code == 0, result.output
    return url, folder, str(entries(folder)[-1]["file"])


def env_for(url: str, folder: Path) -> dict[str, str]:
    return {"DATABASE_URL": url, "BACKUP_DIR": str(folder)}


def test_guide_test_2_dry_run_changes_nothing(run_cli: Run, backed_up: tuple[str, Path, str]) -> None:
    url, folder, name = backed_up
    listed = run_cli("recovery", "list", env=env_for(url, folder))
    assert listed.code == 0 and name in listed.stdout, listed.output
    before, files_before = state(url), folder_state(folder)
    result = run_cli("recovery", "restore", str(folder / name), "--dry-run", env=env_for(url, folder))
    assert result.code == 0, result.output
    assert "Nothing was changed" in result.stdout and "will be replaced" in result.stdout
    assert state(url) == before
    assert folder_state(folder) == files_before


def test_guide_test_3_restore_brings_back_only_the_old_rows(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18)
    folder = tmp_path / "backups"
    env = env_for(url, folder)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE test_backup (id SERIAL PRIMARY KEY, data TEXT)")
        conn.execute("INSERT INTO test_backup (data) VALUES ('avant backup')")
    assert run_cli("backup", "postgres", env=env).code == 0
    backup_file = str(entries(folder)[-1]["file"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO test_backup (data) VALUES ('après backup')")
        conn.execute("CREATE TABLE made_after (x int)")
        conn.execute("CREATE SCHEMA made_after_schema")
    result = run_cli("recovery", "restore", backup_file, "--yes", env=env)
    assert result.code == 0, result.output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT data FROM test_backup ORDER BY id").fetchall() == [("avant backup",)]
        assert conn.execute("SELECT to_regclass('public.made_after')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'made_after_schema'").fetchone() == (0,)
        # The sequence goes on after the restored rows.
        assert conn.execute("INSERT INTO test_backup (data) VALUES ('x') RETURNING id").fetchone() == (2,)
    safety = [e for e in entries(folder) if e["series"] == "safety"]
    assert len(safety) == 1 and str(safety[0]["file"]).startswith("postgres_safety_backup_")
    assert (folder / str(safety[0]["file"])).exists()
    # The safety backup holds the database as it was just before the restore.
    assert safety[0]["tables"] == {"public.test_backup": 2, "public.made_after": 0}


def test_rich_database_round_trips(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    source = make_database(
        pg18,
        RICH_SQL.replace(
            "CREATE ROLE chrono_reader;",
            "DO $$ BEGIN CREATE ROLE chrono_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
        ),
    )
    target = make_database(pg18, "CREATE TABLE stale (x int); INSERT INTO stale VALUES (1);")
    folder = tmp_path / "backups"
    assert run_cli("backup", "postgres", env=env_for(source, folder)).code == 0
    name = str(entries(folder)[-1]["file"])
    result = run_cli(
        "recovery", "restore", name, "--yes", env={**env_for(source, folder), "RESTORE_TARGET_URL": target}
    )
    assert result.code == 0, result.output
    assert schema_dump(target) == schema_dump(source)
    assert table_fingerprints(target) == table_fingerprints(source)


def test_failure_in_the_middle_leaves_the_target_as_it_was(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    role = f"gone_{os.getpid()}"
    url = make_database(
        pg18,
        f"CREATE ROLE {role}; CREATE TABLE a (x int); INSERT INTO a VALUES (1), (2); "
        f"CREATE TABLE b (y text); ALTER TABLE b OWNER TO {role};",
    )
    folder = tmp_path / "backups"
    assert run_cli("backup", "postgres", env=env_for(url, folder)).code == 0
    name = str(entries(folder)[-1]["file"])
    # The backup says `ALTER TABLE b OWNER TO <role>`: a statement this target now rejects, after the drops.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")  # type: ignore[arg-type]
        conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]
        conn.execute("INSERT INTO a VALUES (3)")
        conn.execute("CREATE TABLE newer (z int)")
    before = state(url)
    result = run_cli("recovery", "restore", name, "--yes", env=env_for(url, folder))
    assert result.code == 8, result.output
    assert "rolled back" in result.output and "does not exist" in result.output
    assert "safety backup" in result.output
    assert state(url) == before


def test_connection_killed_during_the_restore(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 1500000) g")
    folder = tmp_path / "backups"
    env = env_for(url, folder)
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(folder)[-1]["file"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM big WHERE g > 10")
    before = state(url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chrono_ci", "recovery", "restore", name, "--yes"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dbname = url.rsplit("/", 1)[1]
    killed = False
    deadline = time.monotonic() + 120
    with psycopg.connect(pg18.url(), autocommit=True) as admin:
        while time.monotonic() < deadline and proc.poll() is None:
            row = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = 'chrono-ci restore' AND state <> 'idle'",
                (dbname,),
            ).fetchone()
            if row and row[0]:
                killed = True
                break
            time.sleep(0.02)
    output, _ = proc.communicate(timeout=120)
    assert killed, output
    assert proc.returncode == 8, output
    assert state(url) == before
    safety = [e for e in entries(folder) if e["series"] == "safety"]
    assert len(safety) == 1 and (folder / str(safety[0]["file"])).exists()


def test_pg15_restores_an_archive_made_by_pg_dump_18(
    run_cli: Run, pg15: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg15, SAMPLE_SQL)
    folder = tmp_path / "backups"
    env = {**env_for(url, folder), "PG_BIN_DIR": str(embedded_bin_dir())}
    assert run_cli("backup", "postgres", env=env).code == 0
    (entry,) = entries(folder)
    assert str(entry["pg_dump_version"]).startswith("18.")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders")
    result = run_cli("recovery", "restore", str(entry["file"]), "--yes", env=env)
    assert result.code == 0, result.output
    # pg_dump 18 writes `SET transaction_timeout`, which PostgreSQL 15 does not know.
    assert "skipped line" in result.stdout and "SET transaction_timeout" in result.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone() == (EXPECTED_TABLES["app.orders"],)


def test_refused_without_yes_when_stdin_is_not_a_terminal(run_cli: Run, backed_up: tuple[str, Path, str]) -> None:
    url, folder, name = backed_up
    before, files_before = state(url), folder_state(folder)
    result = run_cli("recovery", "restore", name, env=env_for(url, folder))
    assert result.code == 9, result.output
    assert "--yes" in result.output and "not a terminal" in result.output
    assert state(url) == before and folder_state(folder) == files_before


def _run_on_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chrono_ci", *args],
        env={**os.environ, **env},
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.close(secondary)
    os.write(main, (answer + "\n").encode())
    output, _ = proc.communicate(timeout=120)
    os.close(main)
    return proc.returncode, output


def test_terminal_confirmation_needs_the_database_name(backed_up: tuple[str, Path, str]) -> None:
    url, folder, name = backed_up
    dbname = url.rsplit("/", 1)[1]
    code, output = _run_on_terminal(["recovery", "restore", name], env_for(url, folder), "wrong-name")
    assert code == 9 and "did not match" in output, output
    code, output = _run_on_terminal(["recovery", "restore", name], env_for(url, folder), dbname)
    assert code == 0, output
    assert "every count matches" in output


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_archives_fail_the_test_and_are_refused(
    run_cli: Run, backed_up: tuple[str, Path, str], damage: str
) -> None:
    url, folder, name = backed_up
    path = folder / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) * 6 // 10])
    else:
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(flipped))
    tested = run_cli("recovery", "test", name, env=env_for(url, folder))
    assert tested.code == 7, tested.output
    assert "FAIL" in tested.stdout
    assert ("truncated" if damage == "truncate" else "damaged") in tested.stdout or "checksum" in tested.stdout
    before = state(url)
    restored = run_cli("recovery", "restore", name, "--yes", env=env_for(url, folder))
    assert restored.code == 7, restored.output
    assert state(url) == before
    safety = [e for e in entries(folder) if e["series"] == "safety"]
    if damage == "truncate":
        # Its size differs from the record's: stopped by the cheap checks, before the plan and the safety backup.
        assert "refusing to restore" in restored.output and "Nothing was touched" in restored.output
        assert not safety
    else:
        # Same size, damaged inside: found as it streams, before COMMIT.
        assert "rolled back before COMMIT: nothing was changed" in restored.output, restored.output
        assert "FAIL decompression" in restored.stdout
        assert len(safety) == 1


def test_file_arguments_that_are_not_archives(run_cli: Run, backed_up: tuple[str, Path, str], tmp_path: Path) -> None:
    url, folder, name = backed_up
    env = env_for(url, folder)
    missing = run_cli("recovery", "test", "postgres_backup_2000-01-01_00-00-00.sql.zst", env=env)
    assert missing.code == 5 and "No archive" in missing.output and "hint:" in missing.output
    stranger = tmp_path / "notes.sql.zst"
    stranger.write_bytes(b"hello")
    not_ours = run_cli("recovery", "restore", str(stranger), "--yes", env=env)
    assert not_ours.code == 2 and "not a chrono-ci archive" in not_ours.output
    escape = run_cli("recovery", "test", "..", env=env)
    assert escape.code == 2, escape.output
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / name).write_bytes((folder / name).read_bytes())
    (folder / "postgres_backup_1999-01-01_00-00-00.sql.zst").symlink_to(outside / name)
    linked = run_cli("recovery", "restore", "postgres_backup_1999-01-01_00-00-00.sql.zst", "--yes", env=env)
    assert linked.code == 2 and "leads outside" in linked.output, linked.output


def test_recovery_list_json_and_checksums(run_cli: Run, backed_up: tuple[str, Path, str]) -> None:
    url, folder, name = backed_up
    result = run_cli("--json", "recovery", "list", env=env_for(url, folder))
    assert result.code == 0, result.output
    (row,) = json.loads(result.stdout)["archives"]
    assert {"file", "kind", "database", "created_at", "size_bytes", "sha256"} <= set(row)
    assert row["file"] == name and row["checksum"] == "ok" and row["newest"] is True
    path = folder / name
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    result = run_cli("recovery", "list", env=env_for(url, folder))
    assert result.code == 7 and "MISMATCH" in result.stdout


def test_recovery_test_restore_proves_the_backup(run_cli: Run, backed_up: tuple[str, Path, str]) -> None:
    url, folder, name = backed_up
    result = run_cli("--json", "recovery", "test", name, "--restore", env=env_for(url, folder))
    assert result.code == 0, result.output
    (document,) = json.loads(result.stdout)["results"]
    assert document["restore"]["ok"] is True
    assert document["restore"]["tables_compared"] == len(EXPECTED_TABLES)


def test_recovery_test_restore_on_a_scratch_url(run_cli: Run, pg18: PgServer, backed_up: tuple[str, Path, str]) -> None:
    url, folder, name = backed_up
    result = run_cli(
        "recovery", "test", name, "--restore", env={**env_for(url, folder), "SCRATCH_DATABASE_URL": pg18.url()}
    )
    assert result.code == 0, result.output
    assert "temporary database on 127.0.0.1" in result.stdout
    leftovers = pg18.execute("SELECT datname FROM pg_database WHERE datname LIKE 'chrono_verify_%'")
    assert leftovers == []


def test_backup_verify_restore_records_the_proof(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    result = run_cli("backup", "postgres", "--verify", "restore", env=env_for(url, folder))
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    verified = entry["verified"]
    assert isinstance(verified, dict) and verified["level"] == "restore" and verified["ok"] is True
    assert verified["tables_compared"] == len(EXPECTED_TABLES)


EXTENSION_DIR = Path("/usr/share/postgresql/15/extension")


def test_missing_extension_on_the_scratch_server_is_named(
    run_cli: Run, pg15: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    if not os.access(EXTENSION_DIR, os.W_OK):
        pytest.skip("needs write access to PostgreSQL 15's extension folder to install a test extension")
    control, script = EXTENSION_DIR / "chrono_probe.control", EXTENSION_DIR / "chrono_probe--1.0.sql"
    control.write_text("default_version = '1.0'\nrelocatable = true\n")
    script.write_text("CREATE FUNCTION chrono_probe() RETURNS int LANGUAGE sql AS 'SELECT 1';\n")
    try:
        url = make_database(pg15, "CREATE EXTENSION chrono_probe; CREATE TABLE t (x int); INSERT INTO t VALUES (1);")
        folder = tmp_path / "backups"
        assert run_cli("backup", "postgres", env=env_for(url, folder)).code == 0
        name = str(entries(folder)[-1]["file"])
        # The default scratch server is the embedded PostgreSQL 18, which has no such extension.
        result = run_cli("recovery", "test", name, "--restore", env=env_for(url, folder))
        assert result.code == 7, result.output
        assert "lacks extension(s) chrono_probe" in result.stdout and "not archive damage" in result.stdout
        assert re.search(r"ok +checksum", result.stdout)
    finally:
        control.unlink()
        script.unlink()


def test_role_without_rights_is_stopped_by_the_dry_run(
    run_cli: Run, pg18: PgServer, backed_up: tuple[str, Path, str]
) -> None:
    url, folder, name = backed_up
    dbname = url.rsplit("/", 1)[1]
    role = f"weak_{os.getpid()}"
    pg18.execute(f"DROP ROLE IF EXISTS {role}")
    pg18.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'weak-pw'")
    pg18.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
    try:
        weak = f"postgresql://{role}:weak-pw@127.0.0.1:{url.split('@')[1].split(':')[1].split('/')[0]}/{dbname}"
        result = run_cli(
            "recovery", "restore", name, "--dry-run", env={**env_for(url, folder), "RESTORE_TARGET_URL": weak}
        )
        assert result.code == 8, result.output
        assert "may not drop schema app" in result.output and "hint:" in result.output
    finally:
        pg18.execute(f'REVOKE ALL ON DATABASE "{dbname}" FROM {role}')
        pg18.execute(f"DROP ROLE {role}")


def test_large_objects_restore_and_stay_all_or_nothing(
    run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    """pg_dump wraps large-object data in its own BEGIN/COMMIT; left alone, that COMMIT would commit a restore
    half-way, and a failure after it (here a GRANT to a role that no longer exists, written at the very end)
    would leave a half-restored database."""
    role = f"lo_reader_{os.getpid()}"
    url = make_database(
        pg18,
        f"CREATE ROLE {role}; CREATE TABLE docs (id int PRIMARY KEY, blob oid); "
        "INSERT INTO docs VALUES (1, lo_from_bytea(0, 'large object payload')); "
        f"GRANT SELECT ON docs TO {role};",
    )
    folder = tmp_path / "backups"
    env = env_for(url, folder)
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(folder)[-1]["file"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO docs VALUES (2, NULL)")
    restored = run_cli("recovery", "restore", name, "--yes", env=env)
    assert restored.code == 0, restored.output
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT id, convert_from(lo_get(blob), 'UTF8') FROM docs").fetchall() == [
            (1, "large object payload")
        ]
        conn.execute("INSERT INTO docs VALUES (3, NULL)")
        conn.execute(f"REVOKE ALL ON docs FROM {role}")  # type: ignore[arg-type]
        conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]
    before = state(url)
    failed = run_cli("recovery", "restore", name, "--yes", env=env)
    assert failed.code == 8, failed.output
    assert "does not exist" in failed.output
    assert state(url) == before
