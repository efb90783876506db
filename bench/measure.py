"""Measuring whole processes side by side: wall time, CPU (the process, its children), peak memory (VmHWM), the
size of folders while it runs, and chrono-ci's run split into phases by the log lines it prints."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

SAMPLE_INTERVAL = 0.05


def log(message: str) -> None:
    # Progress goes to stderr so that stdout holds only the result table.
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class ProcStat:
    """One finished process: its CPU seconds (itself and the children it reaped), exit code and peak memory."""

    name: str
    returncode: int
    cpu_user: float
    cpu_sys: float
    max_rss_kib: int = 0  # its own peak resident size (or its largest reaped child's), from wait4


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
    return ProcStat(name, proc.returncode, usage.ru_utime, usage.ru_stime, usage.ru_maxrss)


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
