"""Scenario `backup`: pg_dump alone, pg_dump | gzip, pg_dump | zstd -1 and chrono-ci backup postgres, in
interleaved rounds, against the targets for wall time, archive size and peak memory."""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Callable
from typing import Any

from harness import (
    TARGET_PEAK_MIB,
    Command,
    Context,
    ScenarioResult,
    chrono_argv,
    mb,
    measurement_json,
    round_ratios,
    scenario,
    text_table,
    verdict,
)
from measure import Measurement, log, run_chrono, run_pipeline

# The targets (docs/performance.md).
TARGET_WALL_RATIO = 1.15  # against the limit, at the reference size, on a quiet machine
TARGET_ZSTD_RATIO = 1.05  # against `pg_dump | zstd -1 > file`, the same work by the standard tools
TARGET_SIZE_RATIO = 0.80


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
        ratios = round_ratios(rounds, command.key, "limit")
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
                mb(size) + (" (SQL)" if command.key == "limit" else ""),
                f"{vs_gzip:.2f}" if vs_gzip is not None else "-",
            ]
        )
    lines = text_table(["command", "median wall", "vs limit", "range", "output", "vs gzip"], rows)

    chrono_runs = [m["chrono"] for m in rounds]
    peak_mib = max((m.peak_rss_kib or 0) for m in chrono_runs) / 1024
    wall_ratio = summary["chrono"]["median_ratio_to_limit"]
    size_ratio = summary["chrono"]["output_vs_gzip"]
    zstd_ratios = round_ratios(rounds, "chrono", "zstd") if ctx.args.zstd else []
    zstd_ratio = statistics.median(zstd_ratios) if zstd_ratios else None
    summary["chrono"]["median_ratio_to_zstd"] = zstd_ratio
    summary["chrono"]["ratios_to_zstd"] = zstd_ratios
    lines += [
        "",
        "targets:",
    ]
    if zstd_ratio is not None:
        lines.append(
            f"  wall  <= {TARGET_ZSTD_RATIO:.2f}x pg_dump | zstd -1 > file (same round)  chrono-ci {zstd_ratio:.2f}x "
            f"({min(zstd_ratios):.2f}-{max(zstd_ratios):.2f})   {verdict(zstd_ratio <= TARGET_ZSTD_RATIO)}"
        )
    lines += [
        f"  wall  <= {TARGET_WALL_RATIO:.2f}x the limit (at scale 50, quiet machine)  chrono-ci {wall_ratio:.2f}x   "
        f"{verdict(wall_ratio <= TARGET_WALL_RATIO)}",
        f"  size  <= {TARGET_SIZE_RATIO:.2f}x the gzip output  chrono-ci {size_ratio:.2f}x   "
        f"{verdict(size_ratio <= TARGET_SIZE_RATIO)}",
        f"  peak  <= {TARGET_PEAK_MIB:.0f} MiB (VmHWM, pg_dump excluded, max of {len(chrono_runs)} runs)  "
        f"chrono-ci {peak_mib:.1f} MiB   {verdict(peak_mib <= TARGET_PEAK_MIB)}",
    ]

    phase_names = {
        "connected": "start + connect",
        "dumped": "dump + compress + write",
        "verified": "verify (stored bytes read back)",
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
                f"SQL {mb(result.report['raw_size_bytes'])}, peak {peak:.1f} MiB"
            )
        peaks = [entry["peak_rss_mib"] for entry in memory]
        lines.append(
            f"  spread {max(peaks) - min(peaks):.1f} MiB; all <= {TARGET_PEAK_MIB:.0f} MiB: "
            f"{verdict(max(peaks) <= TARGET_PEAK_MIB)}"
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
            "zstd_ratio": {
                "limit": TARGET_ZSTD_RATIO,
                "value": zstd_ratio,
                "ok": zstd_ratio is not None and zstd_ratio <= TARGET_ZSTD_RATIO,
            },
            "size_vs_gzip": {"limit": TARGET_SIZE_RATIO, "value": size_ratio, "ok": size_ratio <= TARGET_SIZE_RATIO},
            "peak_rss_mib": {"limit": TARGET_PEAK_MIB, "value": peak_mib, "ok": peak_mib <= TARGET_PEAK_MIB},
        },
        "chrono_phases_median_seconds": phase_medians,
        "chrono_duration_seconds_median": dump_seconds,
        "chrono_self_cpu_median_seconds": self_cpu,
        "limit_cpu_median_seconds": limit_cpu,
        "memory_by_scale": memory,
        "rounds": [{key: measurement_json(m) for key, m in measured.items()} for measured in rounds],
    }
    return ScenarioResult(lines, data)
