"""Benchmark chrono-ci against pg_dump's own speed and the guide's `pg_dump | gzip`, as defined in
/work/shared/reference/performance.md ("How to measure").

Run by hand (or by a workflow), never as a timed test:

    /tmp/venv/bin/python bench/backup_bench.py --scale 50 --runs 3 --memory-scales 5,50

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
import shutil
import signal
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
from typing import IO, Any
from urllib.parse import quote

from chrono_ci.embedded import EmbeddedServer
from chrono_ci.postgres import DatabaseTarget, PgTools, choose_pg_tools, connect, parse_database_url, probe_server
from chrono_ci.settings import OPTIONS

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


class ProcSampler(threading.Thread):
    """Reads /proc/<pid>/status and /proc/<pid>/stat every SAMPLE_INTERVAL while the process runs.

    VmHWM is the peak resident size of that one process, so pg_dump (a child) is not in it; it only grows,
    so the last value read is the peak up to SAMPLE_INTERVAL before the exit.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(name=f"sampler-{pid}", daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.cpu_seconds = 0.0
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


# chrono-ci's own log lines, seen on stderr as they happen, split its run into phases without touching its code.
PHASE_MARKERS = (
    ("connected", "ok   PostgreSQL "),
    ("dumped", "ok   archive written"),
    ("verified", "ok   integrity check passed"),
)


def run_chrono(name: str, argv: list[str], env: dict[str, str]) -> Measurement:
    """chrono-ci as a whole process, with its peak memory, its own CPU time and its phases."""
    stamps: dict[str, float] = {}
    stderr_lines: list[str] = []
    stdout_parts: list[bytes] = []
    procs: list[subprocess.Popen[bytes]] = []
    with _killed_on_exit(procs):
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        procs.append(proc)
        sampler = ProcSampler(proc.pid)
        sampler.start()

        def read_stderr() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                now = time.perf_counter()
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                stderr_lines.append(line)
                for phase, marker in PHASE_MARKERS:
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
    report = json.loads(b"".join(stdout_parts))
    backup = report["backups"][0]
    phases: dict[str, float] = {}
    previous = 0.0
    for phase in ("connected", "dumped", "verified"):
        if phase in stamps:
            phases[phase] = stamps[phase] - previous
            previous = stamps[phase]
    phases["finished"] = wall - previous
    return Measurement(
        name,
        wall,
        int(backup["size_bytes"]),
        [stat],
        peak_rss_kib=sampler.peak_kib,
        self_cpu=sampler.cpu_seconds,
        phases=phases,
        report=backup,
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


def open_server(use_url: bool, stack: contextlib.ExitStack) -> Server:
    if use_url:
        raw = os.environ.get(URL_ENV)
        if not raw:
            raise SystemExit(f"--url reads the server from {URL_ENV}, which is not set.")
        admin = parse_database_url(raw, URL_ENV)
        embedded = False
    else:
        log("starting a throwaway PostgreSQL server")
        server = EmbeddedServer(settings=BUILD_SETTINGS)
        stack.callback(server.stop)
        server.start()
        admin = parse_database_url(server.url(), "embedded")
        embedded = True
    info = probe_server(admin)
    tools = choose_pg_tools(info)
    bin_dir = server.bin_dir if embedded else tools.bin_dir
    for tool in ("psql", "pgbench"):
        if not (bin_dir / tool).is_file():
            raise SystemExit(f"{bin_dir} has no {tool}: it is needed to build the reference database.")
    log(f"PostgreSQL {info.version}; pg_dump {tools.version} from {tools.bin_dir}")
    return Server(admin, bin_dir, tools, info.version, embedded)


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


def chrono_argv() -> list[str]:
    # The console script next to this interpreter: the installed chrono-ci, not whatever PATH finds first.
    script = Path(sys.executable).parent / "chrono-ci"
    if not script.is_file():
        raise SystemExit(f"{script} not found: run this benchmark with the Python of chrono-ci's venv.")
    return [str(script), "--json", "backup", "postgres"]


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
    """Register a scenario for --scenarios; later ones (restore, recovery test --restore, S3 upload) go here."""

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


def _measurement_json(measurement: Measurement) -> dict[str, Any]:
    data = asdict(measurement)
    # The manifest entry holds per-table counts and checksums: keep the figures, not the bulk.
    data["report"] = {
        key: measurement.report[key]
        for key in ("size_bytes", "raw_size_bytes", "duration_seconds", "compression", "compression_level")
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
        description="Benchmark chrono-ci's backup against pg_dump alone and the guide's pg_dump | gzip.",
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
