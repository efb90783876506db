"""What every scenario gets and gives: the Context (databases, folders, the environment of a chrono-ci run), the
registry that --scenarios picks from, the helpers of the result tables, and the machine and versions in the
header."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from databases import Database, Server, build_database, drop_database, run_psql
from measure import Measurement

from chrono_ci.config.settings import OPTIONS
from chrono_ci.source.target import DatabaseTarget

# The memory target (docs/performance.md), shared by the backup and s3 scenarios.
TARGET_PEAK_MIB = 64.0


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
        run_psql(self.server, self.server.admin, sql)
        try:
            yield self.server.admin.with_database(name)
        finally:
            # Always, not only on a --url server: a 1 GB copy per round would fill the disk, and dropping it
            # stops the autovacuum workers a fresh restore wakes, which would otherwise run into the next command.
            drop_database(self.server, name)

    def settle(self) -> None:
        """Untimed, before each restore command: the dirty pages of the last one are not the next one's cost.

        CHECKPOINT writes the server's dirty buffers; sync(2) then writes the page cache (a throwaway server runs
        with fsync=off, so its writes would otherwise reach the disk some 30 s later, in the middle of another
        command).
        """
        run_psql(self.server, self.server.admin, "CHECKPOINT")
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


def round_ratios(rounds: list[dict[str, Measurement]], key: str, base: str) -> list[float]:
    """Per-round wall-time ratios: each command against the limit measured in the same round."""
    return [measured[key].wall / measured[base].wall for measured in rounds if measured[base].wall]


def mb(size: float | None) -> str:
    return "-" if size is None else f"{size / 1e6:,.0f} MB"


def size_text(size: float) -> str:
    return f"{size / 1e3:,.0f} kB" if size < 1e6 else mb(size)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def measurement_json(measurement: Measurement) -> dict[str, Any]:
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


def database_json(db: Database) -> dict[str, Any]:
    # Not asdict(): the target holds the password.
    return {
        "scale": db.scale,
        "target": db.target.display(),
        "events_rows": db.events_rows,
        "size_bytes": db.size_bytes,
        "build_seconds": db.build_seconds,
    }


def first_line(argv: list[str]) -> str:
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
        "pg_dump": first_line([str(server.tools.tool("pg_dump")), "--version"]),
        "pg_dump_path": str(server.tools.tool("pg_dump")),
        "chrono_ci": first_line([*chrono_argv()[:1], "--version"]),
        "python": platform.python_version(),
        "zstandard": zstandard.__version__,
        "gzip": first_line(["gzip", "--version"]),
        "zstd": first_line(["zstd", "--version"]),
    }


def startup_seconds(runs: int = 3) -> float:
    """How long `chrono-ci --version` takes: the interpreter and imports, paid by every run."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*chrono_argv()[:1], "--version"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


BENCH_DIR = Path(__file__).resolve().parent


def cpu_split(measurement: Measurement) -> tuple[float, float]:
    """(the chrono-ci process itself, its children: psql, pg_dump) in CPU seconds."""
    total = sum(p.cpu_user + p.cpu_sys for p in measurement.procs)
    own = measurement.self_cpu or 0.0
    return own, max(total - own, 0.0)


def phase_median(runs: list[Measurement], phase: str) -> float | None:
    values = [m.phases[phase] for m in runs if phase in m.phases]
    return statistics.median(values) if values else None


def ratio_row(label: str, walls: list[float], bases: list[float]) -> tuple[list[str], dict[str, Any]]:
    ratios = [wall / base for wall, base in zip(walls, bases, strict=True) if base]
    wall = statistics.median(walls)
    ratio = statistics.median(ratios)
    row = [label, f"{wall:.2f} s", f"{ratio:.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}"]
    return row, {"label": label, "median_wall_seconds": wall, "median_ratio": ratio, "ratios": ratios}
