"""A restore that trusts nothing: archives planted by someone who can write the backup folder, each attack
provoked for real against PostgreSQL 18 and 15, with its exact effect checked.

The attacker here writes a whole archive and a matching metadata entry (sha256, sizes, row counts), as anyone
with write access to the folder can. What must hold: no command runs, no file is written, no other database is
touched, the target is exactly as before, and the exit code and message say why.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import zstandard

from chrono_ci.archive.manifest import Manifest
from chrono_ci.errors import VerificationFailed
from chrono_ci.pipeline.dumprules import DumpReader
from chrono_ci.restore.replay import ArchiveRefused, Expected, replay_archive
from chrono_ci.restore.schemas import drop_schemas_sql, user_schemas
from chrono_ci.source.embedded import EmbeddedServer
from chrono_ci.source.target import DatabaseTarget, parse_database_url, probe_server
from tests.fixtures.postgres import TEST_PASSWORD, CliResult, PgServer
from tests.sample import SAMPLE_SQL
from tests.test_backup import assert_error, tmpfs
from tests.test_faults import start, wait_for
from tests.test_recovery import entries, state

Run = Callable[..., CliResult]
UNSAFE = 10  # ExitCode.UNTRUSTED


@pytest.fixture(params=["pg18", "pg15"])
def server(request: pytest.FixtureRequest) -> PgServer:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def backed_up(server: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path) -> Iterator[Scene]:
    url = make_database(server, SAMPLE_SQL)
    victim = make_database(server, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42);")
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder)}
    assert run_cli("backup", "postgres", env=env).code == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders WHERE id > 10")  # the state a restore would change
    yield Scene(url, victim, folder, env, tmp_path / "owned")


class Scene:
    def __init__(self, url: str, victim: str, folder: Path, env: dict[str, str], marker: Path) -> None:
        self.url = url
        self.victim = victim
        self.victim_name = victim.rsplit("/", 1)[1]
        self.folder = folder
        self.env = env
        self.marker = marker
        self.genuine_name = str(entries(folder)[-1]["file"])
        self.genuine = (
            zstandard.ZstdDecompressor().decompressobj().decompress((folder / self.genuine_name).read_bytes())
        )
        self.before = state(url)

    def hostile(self, attack: str) -> bytes:
        """The genuine dump with `attack` right after pg_dump's header settings."""
        head, tail = self.genuine.split(b"SET row_security = off;\n", 1)
        return head + b"SET row_security = off;\n" + attack.encode() + tail

    def assert_untouched(self) -> None:
        assert state(self.url) == self.before
        assert not self.marker.exists(), "a command from the archive ran"
        with psycopg.connect(self.victim) as conn:
            assert conn.execute("SELECT x FROM precious").fetchall() == [(42,)]
            planted = conn.execute("SELECT to_regclass('public.planted')").fetchone()
            assert planted == (None,)


def emptying(target: DatabaseTarget) -> list[str]:
    """The preamble a real restore runs first: every user schema dropped, inside the transaction."""
    return drop_schemas_sql(user_schemas(target), probe_server(target).major)


def plant(folder: Path, sql: bytes, *, stamp: str = "2026-01-02_03-04-05", kind: str = "postgres") -> str:
    """Write `sql` as an archive with a metadata entry that matches it, as an attacker with folder access can."""
    name = f"{kind}_backup_{stamp}.sql.zst"
    stored = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(sql)
    path = folder / name
    path.write_bytes(stored)
    path.chmod(0o600)
    reader = DumpReader(kind)
    reader.feed(sql)
    reader.finish()
    with Manifest(folder).locked() as listed:
        listed.append(
            {
                "file": name,
                "kind": kind,
                "series": "backup",
                "source": "127.0.0.1:5432/whatever",
                "created_at": stamp[:10] + "T" + stamp[11:].replace("-", ":") + "Z",
                "size_bytes": len(stored),
                "sha256": hashlib.sha256(stored).hexdigest(),
                "raw_size_bytes": len(sql),
                "compression": "zstd",
                "tables": reader.tables,
                "profile": kind,
            }
        )
    return name


ATTACKS = {
    "shell": "\\! touch {marker}\n",
    "output file": "\\o {marker}\nSELECT 'leaked';\n",
    "copy to program": "\\copy (SELECT 1) TO PROGRAM 'touch {marker}'\n",
    "after unrestrict": "\\unrestrict {key}\n\\! touch {marker}\n",
    "mid-line": "SELECT 1; \\! touch {marker}\n",
    "connect": "\\connect {victim}\nCREATE TABLE planted (x int);\n",
    "commit": "COMMIT;\nDROP DATABASE {victim};\n",
    "hidden commit": "/* looks like a comment */ commit;\nDROP TABLE app.users CASCADE;\n",
    "server program": "COPY app.users (email) FROM PROGRAM 'touch {marker}';\n",
    "savepoint": "SAVEPOINT s;\nDROP SCHEMA app CASCADE;\nRELEASE s;\n",
}


def attack_text(scene: Scene, attack: str) -> str:
    key = next(
        (line.split()[1] for line in scene.genuine.decode().splitlines() if line.startswith("\\restrict ")), "nokey"
    )
    return ATTACKS[attack].format(marker=scene.marker, victim=scene.victim_name, key=key)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_planted_archive_is_refused_before_it_runs_anything(backed_up: Scene, run_cli: Run, attack: str) -> None:
    name = plant(backed_up.folder, backed_up.hostile(attack_text(backed_up, attack)))
    result = run_cli("recovery", "restore", name, "--yes", env=backed_up.env)
    # Its record matches it, so the cheap checks pass; the dump rules refuse it as it streams, before the
    # statement reaches the server, and the transaction is rolled back.
    assert_error(result, UNSAFE, "was refused: line ", "pg_dump never writes", "nothing was changed")
    backed_up.assert_untouched()
    tested = run_cli("recovery", "test", name, "--restore", env=backed_up.env)
    assert tested.code == UNSAFE, tested.output
    assert "contents" in tested.output and "refused" in tested.output
    backed_up.assert_untouched()
    # The dry run reads the whole archive first, as nothing streams there.
    dry = run_cli("recovery", "restore", name, "--dry-run", env=backed_up.env)
    assert_error(dry, UNSAFE, "was refused before anything was touched: line ")
    assert "==> 2. plan" not in dry.output
    # The replay refuses it on its own, whatever its caller checked.
    target = parse_database_url(backed_up.url)
    with pytest.raises(ArchiveRefused, match="refused"):
        replay_archive(backed_up.folder / name, "zstd", target, expected=Expected(), preamble=emptying(target))
    backed_up.assert_untouched()


def test_a_swapped_archive_is_rolled_back_by_its_checksum(backed_up: Scene) -> None:
    genuine = entries(backed_up.folder)[-1]
    other = backed_up.genuine.replace(b"user1@example.com", b"evil1@example.com")
    name = plant(backed_up.folder, other)
    target = parse_database_url(backed_up.url)
    with pytest.raises(VerificationFailed, match="sha256"):
        replay_archive(
            backed_up.folder / name,
            "zstd",
            target,
            expected=Expected(sha256=str(genuine["sha256"])),
            preamble=emptying(target),
        )
    backed_up.assert_untouched()


def test_rows_removed_after_their_copy_fail_the_proof_before_commit(backed_up: Scene, run_cli: Run) -> None:
    sql = backed_up.genuine.replace(
        b"\n--\n-- PostgreSQL database dump complete",
        b"\nDELETE FROM app.orders WHERE id > 100;\n\n--\n-- PostgreSQL database dump complete",
    )
    name = plant(backed_up.folder, sql)
    result = run_cli("recovery", "restore", name, "--yes", env=backed_up.env)
    assert_error(result, 7, "Row counts differ", "app.orders: 3000 in the backup, 100 restored", "rolled back")
    backed_up.assert_untouched()


def test_a_comment_that_looks_like_copy_does_not_fool_the_row_counter(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    url = make_database(
        pg18,
        "CREATE TABLE public.a (id int, t text); INSERT INTO public.a VALUES (1, 'x'), (2, 'y');"
        "COMMENT ON TABLE public.a IS E'hello\\nCOPY public.a (id, t) FROM stdin;\\n1\\tz\\n';",
    )
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b"), "BACKUP_VERIFY": "restore"}
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 0, result.output
    assert entries(tmp_path / "b")[-1]["tables"] == {"public.a": 2}


def _peak_rss_mib(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run chrono-ci in a child and return its peak resident memory (Linux: ru_maxrss in KiB)."""
    script = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(done.stdout + done.stderr)\n"
        "print('\\nRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(done.returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, sys.executable, "-m", "chrono_ci", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    rss = int(done.stdout.rsplit("RSS", 1)[1].strip()) / 1024
    return done, rss


def _plant_stream(folder: Path, parts: Iterator[bytes], *, record_raw: int | None = None) -> str:
    """An archive compressed as it is generated (the test never holds it whole); its record matches it."""
    name = "postgres_backup_2026-01-03_00-00-00.sql.zst"
    digest = hashlib.sha256()
    raw = 0
    reader = DumpReader()
    with (folder / name).open("wb") as out:
        writer = zstandard.ZstdCompressor(level=1, write_checksum=True).stream_writer(out, closefd=False)
        for part in parts:
            raw += len(part)
            reader.feed(part)
            writer.write(part)
        writer.close()
    stored = (folder / name).read_bytes()
    digest.update(stored)
    reader.finish()
    with Manifest(folder).locked() as listed:
        listed.append(
            {
                "file": name,
                "kind": "postgres",
                "series": "backup",
                "source": "127.0.0.1:5432/whatever",
                "created_at": "2026-01-03T00:00:00Z",
                "size_bytes": len(stored),
                "sha256": digest.hexdigest(),
                "raw_size_bytes": raw if record_raw is None else record_raw,
                "compression": "zstd",
                "tables": reader.tables,
            }
        )
    return name


@contextlib.contextmanager
def small_disk(server: EmbeddedServer) -> Iterator[Path]:
    """A 24 MB tmpfs the server's system user can use as a tablespace (outside pytest's private folders)."""
    parent = Path(tempfile.mkdtemp(prefix="chrono-ci-space-"))
    parent.chmod(0o755)
    try:
        with tmpfs(parent / "space", "24m") as mount:
            if server._user is not None:
                os.chown(mount, server._user.pw_uid, server._user.pw_gid)
            yield mount
    finally:
        shutil.rmtree(parent, ignore_errors=True)


HEADER = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
TRAILER = b"\n--\n-- PostgreSQL database dump complete\n--\n\n"
GIB = 1 << 30


def test_a_gigabyte_line_is_refused_in_flat_memory(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir(mode=0o700)
    piece = b"x" * (1 << 20)
    name = _plant_stream(folder, iter([HEADER, b"SELECT '", *([piece] * 1024), b"';\n", TRAILER]))
    done, rss = _peak_rss_mib(["recovery", "test", name], {"BACKUP_DIR": str(folder)})
    assert done.returncode == UNSAFE, done.stdout
    assert "a statement of 1024 MiB outside COPY data" in done.stdout
    assert rss < 150, f"peak memory {rss:.0f} MiB"


def test_a_gigabyte_copy_value_passes_through_in_flat_memory(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir(mode=0o700)
    piece = b"41" * (1 << 19)
    parts = [HEADER, b"COPY public.t (v) FROM stdin;\n\\\\x", *([piece] * 1024), b"\n\\.\n", TRAILER]
    name = _plant_stream(folder, iter(parts))
    done, rss = _peak_rss_mib(["recovery", "test", name], {"BACKUP_DIR": str(folder)})
    assert done.returncode == 0, done.stdout
    assert "1 tables, 1 rows, as recorded" in done.stdout
    assert rss < 150, f"peak memory {rss:.0f} MiB"


def test_a_decompression_bomb_stops_at_its_recorded_size(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir(mode=0o700)
    zeros = b"0" * (1 << 20)
    parts = [HEADER, b"COPY public.t (v) FROM stdin;\n", *([zeros] * 2048), b"\n\\.\n", TRAILER]
    name = _plant_stream(folder, iter(parts), record_raw=4 << 20)
    done, rss = _peak_rss_mib(["recovery", "test", name], {"BACKUP_DIR": str(folder)})
    assert done.returncode == 7, done.stdout
    assert f"more SQL than its record says ({4 << 20} bytes)" in done.stdout
    assert rss < 150, f"peak memory {rss:.0f} MiB"


def test_a_large_copy_row_restores_through_the_executor_in_flat_memory(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    url = make_database(
        pg18, "CREATE TABLE big (v bytea); INSERT INTO big SELECT decode(repeat('ab', 32 << 20), 'hex')"
    )
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b")}
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(tmp_path / "b")[-1]["file"])
    done, rss = _peak_rss_mib(["recovery", "test", name, "--restore"], {**env, "SCRATCH_DATABASE_URL": pg18.url()})
    assert done.returncode == 0, done.stdout
    assert "every row count matches" in done.stdout
    assert rss < 200, f"peak memory {rss:.0f} MiB"


def test_a_full_disk_on_the_target_is_named_and_nothing_changes(pg18: PgServer, run_cli: Run, tmp_path: Path) -> None:
    """The target's data lives on a 24 MB tmpfs tablespace; the backup's data does not fit next to it."""
    assert pg18.server is not None
    with small_disk(pg18.server) as mount:
        pg18.execute(f"CREATE TABLESPACE small LOCATION '{mount}'")
        try:
            pg18.execute("CREATE DATABASE fills TABLESPACE small")
            # Sorts (the tests' fingerprints) spill elsewhere: only the data fills the small disk.
            pg18.execute("ALTER DATABASE fills SET temp_tablespaces = pg_default")
            url = pg18.url("fills")
            with psycopg.connect(url, autocommit=True) as conn:
                # About 12 MB next to the 8 MB of a new database's catalog: it fits once, not twice. Small
                # batches keep generate_series' temporary files from filling the disk first.
                conn.execute("CREATE TABLE t (g int, h text)")
                for start in range(0, 180000, 10000):
                    conn.execute(
                        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(%s::int, %s::int) g",
                        (start + 1, start + 10000),
                    )
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                assert size is not None and 16 << 20 < size[0] < 22 << 20, size
            env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b")}
            assert run_cli("backup", "postgres", env=env).code == 0
            name = str(entries(tmp_path / "b")[-1]["file"])
            before = state(url)
            result = run_cli("recovery", "restore", name, "--yes", env=env)
            assert_error(result, 8, "ran out of disk space", "No space left on device", "rolled back")
            assert state(url) == before
        finally:
            pg18.execute("DROP DATABASE IF EXISTS fills WITH (FORCE)")
            pg18.execute("DROP TABLESPACE IF EXISTS small")


INDEXED = (
    "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS h FROM generate_series(1, 1200000) g;"
    "CREATE INDEX big_h ON big (h);"
)


@pytest.mark.parametrize("phase", ["COPY", "CREATE INDEX"])
def test_sigkill_at_any_phase_of_a_restore_commits_nothing(
    server: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path, phase: str
) -> None:
    url = make_database(server, INDEXED)
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b")}
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(tmp_path / "b")[-1]["file"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM big WHERE g > 1000")
        conn.execute("CREATE TABLE after_backup (x int)")
    before = state(url)
    proc = start(["recovery", "restore", name, "--yes"], env)
    dbname = url.rsplit("/", 1)[1]
    wait_for(
        lambda: bool(
            server.execute(
                f"SELECT 1 FROM pg_stat_activity WHERE datname = '{dbname}' "
                f"AND application_name = 'chrono-ci restore' AND query LIKE '{phase} %' AND state = 'active'"
            )
        ),
        f"the restore to reach {phase}",
        timeout=120,
    )
    proc.kill()
    proc.communicate(timeout=30)
    wait_for(
        lambda: (
            not server.execute(
                f"SELECT 1 FROM pg_stat_activity WHERE datname = '{dbname}' AND application_name = 'chrono-ci restore'"
            )
        ),
        "the restore's session to end",
        timeout=60,
    )
    assert state(url) == before


def test_sigterm_rolls_back_and_says_so(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    url = make_database(pg18, INDEXED)
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b")}
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(tmp_path / "b")[-1]["file"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM big WHERE g > 1000")
    before = state(url)
    proc = start(["recovery", "restore", name, "--yes"], env)
    dbname = url.rsplit("/", 1)[1]
    wait_for(
        lambda: bool(
            pg18.execute(
                f"SELECT 1 FROM pg_stat_activity WHERE datname = '{dbname}' "
                "AND application_name = 'chrono-ci restore' AND query LIKE 'CREATE INDEX%' AND state = 'active'"
            )
        ),
        "the restore to reach CREATE INDEX",
        timeout=120,
    )
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    assert "rolled back; nothing was committed" in output and "Traceback" not in output
    assert state(url) == before


@pytest.fixture
def held(pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path) -> Iterator[Scene]:
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(folder)}
    assert run_cli("backup", "postgres", env=env).code == 0
    yield Scene(
        url,
        make_database(pg18, "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42);"),
        folder,
        env,
        tmp_path / "owned",
    )


def _app_session(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An application holding a lock on a table the restore must drop: an open transaction that read it."""
    conn = psycopg.connect(url, application_name="the-shop-app")
    conn.execute("SELECT count(*) FROM app.orders")
    return conn


def test_a_busy_target_fails_fast_naming_who_holds_it(held: Scene, run_cli: Run) -> None:
    app = _app_session(held.url)
    try:
        pid = app.info.backend_pid
        started = time.monotonic()
        result = run_cli("recovery", "restore", held.genuine_name, "--yes", "--lock-timeout", "1", env=held.env)
        assert_error(result, 8, "could not lock", f"pid {pid}", "the-shop-app", "--terminate-sessions")
        assert time.monotonic() - started < 120
        assert state(held.url) == held.before
    finally:
        app.close()


def test_terminate_sessions_ends_them_and_restores(held: Scene, run_cli: Run) -> None:
    app = _app_session(held.url)
    try:
        dry = run_cli("recovery", "restore", held.genuine_name, "--dry-run", env=held.env)
        assert dry.code == 0 and "other session(s) connected" in dry.stdout and "the-shop-app" in dry.stdout
        result = run_cli("recovery", "restore", held.genuine_name, "--yes", "--terminate-sessions", env=held.env)
        assert result.code == 0, result.output
        assert _dead(app)
    finally:
        app.close()


def _dead(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_terminate_sessions_without_the_right_is_a_clear_error(pg18: PgServer, run_cli: Run, tmp_path: Path) -> None:
    """A role that owns the database but may not end a superuser's session."""
    role = f"restorer_{os.getpid()}"
    dbname = f"owned_by_{role}"
    pg18.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    pg18.execute(f'CREATE DATABASE "{dbname}" OWNER {role}')
    try:
        admin = parse_database_url(pg18.url(dbname))
        own_url = f"postgresql://{role}:pw-{role}@{admin.host}:{admin.port}/{dbname}"
        with psycopg.connect(own_url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA app AUTHORIZATION CURRENT_USER")
            conn.execute("CREATE TABLE app.orders (id int)")
        env = {"DATABASE_URL": own_url, "BACKUP_DIR": str(tmp_path / "b")}
        assert run_cli("backup", "postgres", env=env).code == 0
        name = str(entries(tmp_path / "b")[-1]["file"])
        with psycopg.connect(pg18.url(dbname), application_name="the-shop-app") as app:  # a superuser's session
            app.execute("SELECT 1")
            result = run_cli("recovery", "restore", name, "--yes", "--terminate-sessions", env=env)
            assert_error(result, 8, "may not end the other sessions", "the-shop-app", "pg_signal_backend")
    finally:
        pg18.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        pg18.execute(f"DROP ROLE IF EXISTS {role}")


def test_the_plan_names_the_backups_database_when_it_is_another(
    held: Scene, pg18: PgServer, make_database: Callable[..., str], run_cli: Run
) -> None:
    other = make_database(pg18, "CREATE TABLE keep_me (x int)")
    env = {**held.env, "RESTORE_TARGET_URL": other}
    source_db = held.url.rsplit("/", 1)[1]
    other_db = other.rsplit("/", 1)[1]
    dry = run_cli("recovery", "restore", held.genuine_name, "--dry-run", env=env)
    assert dry.code == 0, dry.output
    assert f"the backup was made from database '{source_db}'; the target is '{other_db}'" in dry.stdout


def test_the_terminal_prompt_names_both_databases(
    held: Scene, pg18: PgServer, make_database: Callable[..., str]
) -> None:
    import pty

    other = make_database(pg18)
    env = {**os.environ, **held.env, "RESTORE_TARGET_URL": other}
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, "-m", "chrono_ci", "recovery", "restore", held.genuine_name], env)
    output = b""
    deadline = time.monotonic() + 60
    while b"to confirm" not in output and time.monotonic() < deadline:
        try:
            output += os.read(fd, 4096)
        except OSError:
            break
    os.write(fd, b"no\n")
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "with a backup of another database" in text and held.url.rsplit("/", 1)[1] in text, text
    assert os.waitstatus_to_exitcode(status) == 9


def test_the_scratch_server_running_out_of_disk_says_so(
    pg18: PgServer, make_database: Callable[..., str], run_cli: Run, tmp_path: Path
) -> None:
    # About 20 MB of rows: more than the 16 MB a 24 MB disk leaves next to a new database's catalog.
    url = make_database(pg18, "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 300000) g")
    env = {"DATABASE_URL": url, "BACKUP_DIR": str(tmp_path / "b")}
    assert run_cli("backup", "postgres", env=env).code == 0
    name = str(entries(tmp_path / "b")[-1]["file"])
    with EmbeddedServer(password=TEST_PASSWORD) as scratch, small_disk(scratch) as mount:
        with psycopg.connect(scratch.url(), autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE small LOCATION '{mount}'")
            conn.execute("ALTER DATABASE template1 SET TABLESPACE small")
        result = run_cli("recovery", "test", name, "--restore", env={**env, "SCRATCH_DATABASE_URL": scratch.url()})
        assert result.code == 7, result.output
        assert "ran out of disk space" in result.output and "No space left on device" in result.output
        with psycopg.connect(scratch.url(), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'chrono_verify_%'").fetchone() == (
                0,
            )
