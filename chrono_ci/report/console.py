"""What a person reads: step lines, results and summaries, readable in a CI log; progress on a terminal.

Everything goes through `Reporter`, which scrubs every known secret from every line before it is written. With
--json, the human lines go to stderr so that stdout holds only the JSON document.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from chrono_ci.errors import ChronoError
from chrono_ci.secrets import SecretSet


def human_size(size: int | float) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} TB"


class Reporter:
    def __init__(self, json_mode: bool = False, stream: TextIO | None = None, secrets: Iterable[str] = ()) -> None:
        self.json_mode = json_mode
        self.out = stream or (sys.stderr if json_mode else sys.stdout)
        self.secrets = SecretSet(secrets)
        self._progress_shown = False
        self._last_progress = 0.0

    def add_secrets(self, values: Iterable[str]) -> None:
        self.secrets.add(values)

    def scrub(self, text: str) -> str:
        return self.secrets.scrub(text)

    def _write(self, text: str) -> None:
        self._clear_progress()
        self.out.write(self.scrub(text) + "\n")
        self.out.flush()

    def line(self, text: str = "") -> None:
        self._write(text)

    def step(self, text: str) -> None:
        self._write(f"==> {text}")

    def ok(self, text: str) -> None:
        self._write(f"  ok   {text}")

    def info(self, text: str) -> None:
        self._write(f"  ..   {text}")

    def warn(self, text: str) -> None:
        self._write(f"  warn {text}")

    def fail(self, text: str) -> None:
        self._write(f"  FAIL {text}")

    def error(self, error: ChronoError) -> None:
        self._write(f"error: {error.message}")
        if error.hint:
            self._write(f"hint:  {error.hint}")

    def table(self, rows: list[list[str]], header: list[str]) -> None:
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        self._write("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            self._write("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))

    def progress(self, done_bytes: int, label: str) -> None:
        """A live byte counter, only on a terminal: CI logs get the step lines instead."""
        if not self.out.isatty():
            return
        now = time.monotonic()
        if now - self._last_progress < 0.2:
            return
        self._last_progress = now
        self.out.write(f"\r  ..   {label}: {human_size(done_bytes)} read\x1b[K")
        self.out.flush()
        self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.out.write("\r\x1b[K")
            self._progress_shown = False

    def emit_json(self, document: Any) -> None:
        sys.stdout.write(self.scrub(json.dumps(document, indent=2, ensure_ascii=False, default=str)) + "\n")
        sys.stdout.flush()
