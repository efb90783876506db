"""Scenario `restore`: a plain `zstd -dc | psql` against chrono-ci recovery restore and recovery test --restore,
each on its own database, with the splits of chrono-ci's runs and the CPU of the server backends."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from databases import Server, drop_database
from harness import (
    Command,
    Context,
    ScenarioResult,
    _url_of,
    chrono_argv,
    chrono_cli,
    cpu_split,
    mb,
    measurement_json,
    phase_median,
    ratio_row,
    scenario,
    text_table,
    verdict,
)
from measure import CommandFailed, Markers, Measurement, log, run_chrono, run_pipeline, whole_report

from chrono_ci.source.target import connect

# The targets: `recovery restore` with its safety checks in the path, the safety backup excluded (it is
# a backup, measured as such by the backup scenario), and restore-verification, each against a plain restore.
TARGET_RESTORE_RATIO = 1.1
TARGET_VERIFY_RATIO = 1.15
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
    "checked": "start + integrity test (cheap checks; the rest as it streams)",
    "planned": "plan + confirmation",
    "safety_dumped": "safety backup: dump + compress + write",
    "safety_checked": "safety backup: check (re-read)",
    "safety_rest": "safety backup: manifest + rotation",
    "restored": "the restore (one transaction, integrity + row counts proven before COMMIT)",
    "finished": "report + exit",
}
SAFETY_PHASES = ("safety_dumped", "safety_checked", "safety_rest")
# `chrono-ci recovery test --restore`.
TEST_MARKERS: Markers = (
    ("checked", "==> restore-verification"),
    ("restored", "ok   restore: "),
)
TEST_PHASES = {
    "checked": "start + integrity test (cheap checks; the rest as it streams)",
    "restored": "scratch db + restore (integrity proven as it streams) + count(*) + drop",
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
        drop_database(server, name)


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


def _split_lines(title: str, runs: list[Measurement], names: dict[str, str], base: float) -> list[str]:
    wall = statistics.median(m.wall for m in runs)
    lines = ["", f"{title} (medians of each phase, from the time each log line appeared on stderr):"]
    for phase, label in names.items():
        value = phase_median(runs, phase)
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
    log(f"archive: {archive.name}, {mb(made.output_bytes)} ({compression}) from {mb(made.report['raw_size_bytes'])}")

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
        # The `test` document (docs/results.md): one entry per archive tested, its restore-verification inside.
        tested = result.report.get("results") or [{}]
        proof = tested[0].get("restore") or {}
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

    unsafe = [m.wall - phase_sum(m, SAFETY_PHASES) for m in restores]
    table: list[tuple[str, list[float]]] = [
        (f"{DECOMPRESSORS[compression][0]} -dc | psql --single-transaction  (plain, the baseline)", plains),
        ("chrono-ci recovery restore FILE --yes  (whole command)", [m.wall for m in restores]),
        ("  without the safety backup (what the target measures)", unsafe),
        ("  of which the restore step alone (5.)", [m.phases.get("restored", 0.0) for m in restores]),
        ("  the safety backup (4.)", [phase_sum(m, SAFETY_PHASES) for m in restores]),
        ("chrono-ci recovery test FILE --restore  (restore-verification)", [m.wall for m in verifies]),
        ("  of which scratch db + restore + count(*)", [m.phases.get("restored", 0.0) for m in verifies]),
    ]
    keys = ["plain", "restore", "restore_unsafe", "restore_step", "safety_backup", "verify", "verify_restore_step"]
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    for key, (label, walls) in zip(keys, table, strict=True):
        row, summary[key] = ratio_row(label, walls, plains)
        rows.append(row)
    lines = [
        f"archive: {archive.name}: {mb(made.output_bytes)} ({compression}) from {mb(made.report['raw_size_bytes'])} "
        f"of SQL; every psql is {psql}",
        "",
        *text_table(["command", "median wall", "vs plain", "range"], rows),
    ]

    verify_ratio = summary["verify"]["median_ratio"]
    restore_ratio = summary["restore_unsafe"]["median_ratio"]
    lines += [
        "",
        "targets:",
        f"  recovery restore without its safety backup <= {TARGET_RESTORE_RATIO:.2f}x a plain restore   "
        f"chrono-ci {restore_ratio:.2f}x   {verdict(restore_ratio <= TARGET_RESTORE_RATIO)}",
        f"  restore-verification <= {TARGET_VERIFY_RATIO:.2f}x a plain restore   chrono-ci {verify_ratio:.2f}x   "
        f"{verdict(verify_ratio <= TARGET_VERIFY_RATIO)}",
        f"  (no target) the restore step alone {summary['restore_step']['median_ratio']:.2f}x, the whole "
        f"recovery restore with its safety backup {summary['restore']['median_ratio']:.2f}x the plain restore",
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
            own = statistics.median(cpu_split(m)[0] for m in runs)
            children = statistics.median(cpu_split(m)[1] for m in runs)
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
            "restore_ratio": {
                "limit": TARGET_RESTORE_RATIO,
                "value": restore_ratio,
                "ok": restore_ratio <= TARGET_RESTORE_RATIO,
            },
            "verify_ratio": {
                "limit": TARGET_VERIFY_RATIO,
                "value": verify_ratio,
                "ok": verify_ratio <= TARGET_VERIFY_RATIO,
            },
        },
        "restore_phases_median_seconds": {p: phase_median(restores, p) for p in RESTORE_PHASES},
        "verify_phases_median_seconds": {p: phase_median(verifies, p) for p in TEST_PHASES},
        "cpu_median_seconds": cpu,
        "peak_rss_mib": {"restore": restore_peak, "verify": verify_peak},
        "rounds": [{key: measurement_json(m) for key, m in measured.items()} for measured in rounds],
    }
    return ScenarioResult(lines, data)
