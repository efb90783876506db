"""Running chrono-ci for the Action: `python -I -m chrono_ci --json ARGS` as a child, its log streamed into ours
(scrubbed), its JSON result kept, the signals of a cancelled job passed on."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from chrono_ci.action.plan import Plan
from chrono_ci.action.workflow import Log
from chrono_ci.report.results import Result, read_result


@dataclass
class Run:
    args: list[str]
    code: int
    raw: Any = None  # the JSON result exactly as chrono-ci printed it

    @property
    def result(self) -> Result | None:
        """The result document, typed (chrono_ci/report/results.py); None when chrono-ci printed none."""
        return read_result(self.raw)

    @property
    def file_arg(self) -> str | None:
        """FILE of `recovery test|restore FILE`."""
        return self.args[2] if self.args[:1] == ["recovery"] and len(self.args) > 2 else None


def run_chrono(args: Sequence[str], plan: Plan, log: Log) -> Run:
    """`python -m chrono_ci --json ARGS` as a child: its log streams into ours (scrubbed), its JSON is kept."""
    # -I: the workflow's PYTHONPATH/PYTHONHOME and the workspace (the current folder) must not change which
    # chrono_ci runs.
    argv = [sys.executable, "-I", "-m", "chrono_ci", "--json", *args]
    cwd = plan.workspace if plan.workspace.is_dir() else None
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=plan.env,
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        previous = _forward_signals(proc)
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                log.line(line.rstrip("\n"))
            code = proc.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        out.seek(0)
        text = out.read()
    if code < 0:
        code = 128 - code  # killed by a signal: the shell's convention
    try:
        raw = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        raw = None
    return Run(list(args), code, raw)


def _forward_signals(proc: subprocess.Popen[str]) -> dict[int, Any]:
    """A cancelled job stops the container with SIGTERM to PID 1 (us): pass it on so that chrono-ci cleans up
    and exits with its own code, instead of dying half-way or being killed after the grace period."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, forward)
    return previous
