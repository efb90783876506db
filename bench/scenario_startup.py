"""Scenario `startup`: chrono-ci's fixed costs, paid by every run whatever the database's size.

(a) `chrono-ci --version` against `python -c pass` (the same interpreter: its floor) and `pg_dump --version`,
with a cold cache of pg_dump versions (a fresh XDG_CACHE_HOME each run: every pg_dump found is asked its
version) and a warm one. The target: under 0.1 s.

(b) From the start of `chrono-ci backup postgres` to pg_dump's first byte. PG_BIN_DIR is a folder where pg_dump
is a bash script that writes the time it starts ($EPOCHREALTIME, no process forked) to a file, then `exec`s the
real pg_dump (the folder's other entries are links to the real tools). The same script started directly, with
its stdout read here, gives pg_dump's own delay from start to first byte; chrono-ci's first byte is its start ->
spawn delay plus that. The target: within 0.15 s of pg_dump started directly.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import Context, ScenarioResult, chrono_cli, scenario, text_table, verdict
from measure import CommandFailed, log

TARGET_VERSION_SECONDS = 0.10
TARGET_FIRST_BYTE_SECONDS = 0.15
VERSION_RUNS = 15  # per round: a run is a few tens of milliseconds, so many of them make a stable median


def _wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise CommandFailed(f"{argv[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return wall


def _stamped_bin_dir(real: Path, folder: Path, stamps: Path) -> Path:
    """A copy of `real` where pg_dump writes when it starts (not for --version, the discovery's probe)."""
    folder.mkdir()
    for entry in real.iterdir():
        if entry.name != "pg_dump":
            (folder / entry.name).symlink_to(entry)
    script = folder / "pg_dump"
    script.write_text(
        f'#!/bin/bash\n[ "$1" = --version ] || echo "$EPOCHREALTIME" >> {stamps}\nexec {real / "pg_dump"} "$@"\n'
    )
    script.chmod(0o755)
    return folder


def _last_stamp(stamps: Path) -> float:
    return float(stamps.read_text().split()[-1])


def _direct_first_byte(argv: list[str], env: dict[str, str], stamps: Path) -> tuple[float, float]:
    """(start -> the script runs, start -> first byte on its stdout) for pg_dump started here."""
    started = time.time()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    byte_at = time.time()
    proc.stdout.read()
    _out, err = proc.communicate()
    if proc.returncode != 0 or not first:
        raise CommandFailed(f"pg_dump exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    return _last_stamp(stamps) - started, byte_at - started


def _chrono_spawn(argv: list[str], env: dict[str, str], stamps: Path) -> tuple[float, float]:
    """(start -> chrono-ci spawns pg_dump, the whole run) for one `chrono-ci backup postgres`."""
    started = time.time()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    wall = time.time() - started
    if done.returncode != 0:
        raise CommandFailed(f"chrono-ci exited {done.returncode}: {done.stderr.decode(errors='replace')[-800:]}")
    return _last_stamp(stamps) - started, wall


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


@scenario("startup", "chrono-ci --version (cold and warm cache) and start -> pg_dump's first byte, vs pg_dump direct")
def startup_scenario(ctx: Context) -> ScenarioResult:
    chrono = chrono_cli()[0]
    real_pg_dump = ctx.server.tools.tool("pg_dump")
    base_env = dict(os.environ)
    base_env.pop("PG_BIN_DIR", None)
    warm_home = ctx.fresh_dir("cache-warm")
    warm_env = {**base_env, "XDG_CACHE_HOME": str(warm_home)}
    _wall([chrono, "--version"], warm_env)  # fills the warm cache
    found = subprocess.run([chrono, "--version"], env=warm_env, capture_output=True, text=True, check=True).stdout
    pg_dumps = sum(1 for line in found.splitlines() if line.startswith("pg_dump "))

    def cold(_run: int) -> float:
        home = ctx.fresh_dir("cache-cold")
        try:
            return _wall([chrono, "--version"], {**base_env, "XDG_CACHE_HOME": str(home)})
        finally:
            shutil.rmtree(home, ignore_errors=True)

    version_commands: dict[str, Any] = {
        "python": (
            "python -c pass  (the interpreter's floor)",
            lambda _r: _wall([sys.executable, "-c", "pass"], base_env),
        ),
        "pg_dump": ("pg_dump --version", lambda _r: _wall([str(real_pg_dump), "--version"], base_env)),
        "warm": ("chrono-ci --version, warm cache", lambda _r: _wall([chrono, "--version"], warm_env)),
        "cold": (f"chrono-ci --version, cold cache ({pg_dumps} pg_dump probed)", cold),
    }
    log(f"startup: {ctx.args.runs} round(s) of {VERSION_RUNS} runs of each --version command")
    walls: dict[str, list[float]] = {key: [] for key in version_commands}
    for round_no in range(ctx.args.runs * VERSION_RUNS):
        for key, (_label, run) in version_commands.items():
            walls[key].append(run(round_no))

    # (b) first byte, on the reference database (its size does not matter here: the first byte is the header).
    db = ctx.database(ctx.args.scale)
    stamps = ctx.scratch / "pg_dump-started"
    stamped = _stamped_bin_dir(real_pg_dump.parent, ctx.scratch / "stamped-bin", stamps)
    pg_env = db.target.libpq_env()
    direct_argv = [str(stamped / "pg_dump"), *ctx.pg_dump()[1:]]
    backup_dir = ctx.fresh_dir("startup-backups")
    chrono_env = {**ctx.chrono_env(db.target, backup_dir), "PG_BIN_DIR": str(stamped)}
    chrono_env["XDG_CACHE_HOME"] = str(warm_home)
    argv = chrono_cli("backup", "postgres")
    _chrono_spawn(argv, chrono_env, stamps)  # untimed: warms the page cache and caches the script's version
    spawn_direct: list[float] = []
    byte_direct: list[float] = []
    spawn_chrono: list[float] = []
    whole_chrono: list[float] = []
    log(f"startup: {ctx.args.runs * 3} runs each of pg_dump direct and chrono-ci backup postgres (scale {db.scale})")
    for _ in range(ctx.args.runs * 3):
        spawned, first = _direct_first_byte(direct_argv, pg_env, stamps)
        spawn_direct.append(spawned)
        byte_direct.append(first)
        spawned, whole = _chrono_spawn(argv, chrono_env, stamps)
        spawn_chrono.append(spawned)
        whole_chrono.append(whole)
    shutil.rmtree(backup_dir, ignore_errors=True)

    medians = {key: statistics.median(values) for key, values in walls.items()}
    rows = [
        [
            label,
            _ms(medians[key]),
            f"{medians[key] / medians['python']:.2f}",
            f"{min(walls[key]) * 1000:.0f}-{max(walls[key]) * 1000:.0f}",
        ]
        for key, (label, _run) in version_commands.items()
    ]
    lines = text_table(["command", "median wall", "vs python -c pass", "range (ms)"], rows)
    own_delay = statistics.median(b - s for b, s in zip(byte_direct, spawn_direct, strict=True))
    chrono_spawn = statistics.median(spawn_chrono)
    first_byte = chrono_spawn + own_delay
    direct_byte = statistics.median(byte_direct)
    lines += [
        "",
        *text_table(
            ["from start", "median", "range"],
            [
                ["pg_dump direct: the script runs", _ms(statistics.median(spawn_direct)), _range(spawn_direct)],
                ["pg_dump direct: first byte", _ms(direct_byte), _range(byte_direct)],
                ["chrono-ci: pg_dump spawned", _ms(chrono_spawn), _range(spawn_chrono)],
                ["chrono-ci: first byte (spawned + pg_dump's own delay)", _ms(first_byte), ""],
                [
                    f"chrono-ci: whole backup (scale {db.scale})",
                    _ms(statistics.median(whole_chrono)),
                    _range(whole_chrono),
                ],
            ],
        ),
        "",
        f"target: chrono-ci --version under {_ms(TARGET_VERSION_SECONDS)} (warm cache): {_ms(medians['warm'])} "
        f"{verdict(medians['warm'] < TARGET_VERSION_SECONDS)}; cold cache {_ms(medians['cold'])} "
        f"{verdict(medians['cold'] < TARGET_VERSION_SECONDS)}",
        f"target: first byte within {_ms(TARGET_FIRST_BYTE_SECONDS)} of pg_dump direct: "
        f"+{_ms(first_byte - direct_byte)} {verdict(first_byte - direct_byte <= TARGET_FIRST_BYTE_SECONDS)}",
    ]
    data = {
        "version_runs": {key: values for key, values in walls.items()},
        "version_median_seconds": medians,
        "pg_dumps_found": pg_dumps,
        "first_byte": {
            "scale": db.scale,
            "direct_spawn_seconds": spawn_direct,
            "direct_first_byte_seconds": byte_direct,
            "chrono_spawn_seconds": spawn_chrono,
            "chrono_whole_seconds": whole_chrono,
            "chrono_first_byte_median_seconds": first_byte,
            "direct_first_byte_median_seconds": direct_byte,
            "over_direct_seconds": first_byte - direct_byte,
        },
        "load_average": os.getloadavg(),
    }
    return ScenarioResult(lines, data)


def _range(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms"
