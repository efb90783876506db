"""Benchmark chrono-ci against pg_dump's own speed and the guide's `pg_dump | gzip`, as the team's performance
reference defines it ("How to measure"): the backup, the restore and restore-verification against a plain
`zstd -dc | psql`, and the backup with an S3 upload (to a SeaweedFS on loopback).

Run by hand (or by a workflow), never as a timed test, with the Python of chrono-ci's venv:

    .venv/bin/python bench/backup_bench.py --scale 50 --runs 3 --memory-scales 5,50
    .venv/bin/python bench/backup_bench.py --scale 50 --runs 3 --scenarios restore,s3

Every command is a whole process, measured side by side in interleaved rounds (A B C D A B C D ...), because the
machines are shared and noisy: an absolute time means little, a ratio measured in the same round means a lot.
See bench/README.md for what each figure means.

This file is the command line and the report; measure.py times processes, databases.py builds the server and
the reference databases, harness.py is what every scenario gets, and each scenario is its own scenario_*.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

# Each scenario registers itself with harness.SCENARIOS when imported, in the order --scenarios lists them.
import scenario_backup  # noqa: F401
import scenario_restore  # noqa: F401
import scenario_s3  # noqa: F401
import scenario_startup  # noqa: F401
from databases import EVENTS_ROWS_PER_SCALE, URL_ENV, open_server
from harness import BENCH_DIR, SCENARIOS, Context, database_json, machine_info, startup_seconds, versions
from measure import CommandFailed, log


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
        "databases": {str(db.scale): database_json(db) for db in ctx.databases.values()},
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
