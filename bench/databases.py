"""The server and the reference databases: a throwaway embedded PostgreSQL 18 (or the server in
$BENCH_DATABASE_URL), and pgbench -i -s N plus an `events` table of N x 60,000 rows, built once per scale."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from measure import INTERRUPTED_CODES, CommandFailed, log, process_cpu_seconds

from chrono_ci.source.embedded import EmbeddedServer
from chrono_ci.source.target import DatabaseTarget, connect, parse_database_url, probe_server
from chrono_ci.source.tools import PgTools, choose_pg_tools

URL_ENV = "BENCH_DATABASE_URL"
DB_PREFIX = "chrono_bench_s"
EVENTS_ROWS_PER_SCALE = 60_000  # scale 50 -> the reference's 3,000,000 rows
EVENTS_SQL = """
CREATE TABLE events AS
SELECT g AS id, now() - (g || ' seconds')::interval AS ts, md5(g::text) AS h,
       jsonb_build_object('user', g % 9973, 'kind', (array['click','view','buy','signup'])[1 + g % 4],
                          'payload', md5((g * 7)::text) || md5((g * 13)::text)) AS data
FROM generate_series(1, {rows}) g
"""
# Settings for the throwaway server that only make building the database faster: with wal_level=minimal the
# CREATE TABLE AS skips WAL, and a large max_wal_size avoids checkpoints in the middle of pgbench -i.
# None of them changes how pg_dump reads the tables.
BUILD_SETTINGS = {"wal_level": "minimal", "max_wal_senders": "0", "max_wal_size": "8GB"}


@dataclass
class Server:
    """Where the benchmark databases live: a throwaway EmbeddedServer or the one in BENCH_DATABASE_URL."""

    admin: DatabaseTarget  # the maintenance database, to create and drop ours
    bin_dir: Path  # psql and pgbench of the server's version
    tools: PgTools  # the pg_dump chrono-ci picks for this server: every command uses this one
    version: str
    embedded: bool
    data_dir: Path | None = None  # a throwaway server's, to find its postmaster

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0].split()[0])

    def backends_cpu(self) -> float | None:
        """CPU seconds of the throwaway server's postmaster and every backend it has reaped so far.

        A backend's CPU is added to the postmaster's (cutime/cstime) when it exits, so the difference across a
        command is what the connections it opened cost the server. None on a --url server (not ours to read).
        """
        if self.data_dir is None:
            return None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return process_cpu_seconds(pid)


def open_server(use_url: bool, stack: contextlib.ExitStack) -> Server:
    if use_url:
        raw = os.environ.get(URL_ENV)
        if not raw:
            raise SystemExit(f"--url reads the server from {URL_ENV}, which is not set.")
        admin = parse_database_url(raw, URL_ENV)
        embedded = False
        data_dir = None
    else:
        log("starting a throwaway PostgreSQL server")
        server = EmbeddedServer(settings=BUILD_SETTINGS)
        stack.callback(server.stop)
        server.start()
        admin = parse_database_url(server.url(), "embedded")
        embedded = True
        data_dir = server.data_dir
    info = probe_server(admin)
    tools = choose_pg_tools(info)
    bin_dir = server.bin_dir if embedded else tools.bin_dir
    for tool in ("psql", "pgbench"):
        if not (bin_dir / tool).is_file():
            raise SystemExit(f"{bin_dir} has no {tool}: it is needed to build the reference database.")
    log(f"PostgreSQL {info.version}; pg_dump {tools.version} from {tools.bin_dir}")
    return Server(admin, bin_dir, tools, info.version, embedded, data_dir)


@dataclass
class Database:
    scale: int
    target: DatabaseTarget
    events_rows: int
    size_bytes: int
    build_seconds: float


def run_psql(server: Server, target: DatabaseTarget, *commands: str) -> None:
    argv = [str(server.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        argv += ["-c", command]
    _check_run(argv, target.libpq_env())


def _check_run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if done.returncode in INTERRUPTED_CODES:
        raise KeyboardInterrupt(Path(argv[0]).name)
    if done.returncode != 0:
        raise CommandFailed(f"{Path(argv[0]).name} exited {done.returncode}: {done.stderr.strip()[-1500:]}")


def drop_database(server: Server, name: str) -> None:
    try:
        run_psql(server, server.admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except CommandFailed as exc:  # cleanup must not hide the error that brought us here
        log(f"could not drop {name}: {exc}")


def build_database(server: Server, scale: int, stack: contextlib.ExitStack) -> Database:
    """pgbench -i -s SCALE plus events with SCALE * 60,000 rows, vacuumed so that no run pays for hint bits."""
    name = f"{DB_PREFIX}{scale}"
    with connect(server.admin) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if exists:
        # Never drop a database this run did not create: on a server from --url it may be someone's.
        raise SystemExit(f"The database {name} already exists on the server; drop it or use another server.")
    started = time.perf_counter()
    log(f"building {name}: pgbench -i -s {scale} + {scale * EVENTS_ROWS_PER_SCALE:,} events rows")
    run_psql(server, server.admin, f'CREATE DATABASE "{name}"')
    if not server.embedded:  # a throwaway server goes away whole
        stack.callback(drop_database, server, name)
    target = server.admin.with_database(name)
    _check_run([str(server.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale)], target.libpq_env())
    rows = scale * EVENTS_ROWS_PER_SCALE
    run_psql(server, target, EVENTS_SQL.format(rows=rows), "VACUUM (ANALYZE) events", "CHECKPOINT")
    with connect(target) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    size = int(str(row[0]))
    seconds = time.perf_counter() - started
    log(f"built {name} in {seconds:.0f} s: {size / 1e9:.2f} GB on disk")
    return Database(scale, target, rows, size, seconds)
