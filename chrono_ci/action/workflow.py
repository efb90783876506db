"""Workflow commands (::add-mask::, ::error::, ::group:: ...) as the toolkit writes them, and the Action's log:
one stream, masks registered before any line that could carry a secret, every line scrubbed."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from chrono_ci.secrets import SecretSet, add_mask, escape_data


def escape_property(text: str) -> str:
    """The toolkit's escaping for a command's property values, where `:` and `,` are separators."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command_line(name: str, message: str = "", **properties: str) -> str:
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items() if value)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


class Log:
    """Everything the Action prints goes to stdout, one stream, so that masks are registered before any line
    that could carry a secret, whatever the order in which the runner reads two streams."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.secrets = SecretSet()

    def mask(self, values: Iterable[str]) -> None:
        for value in values:
            if value.strip() not in self.secrets:
                self.secrets.add(add_mask(value, self.stream))

    def scrub(self, text: str) -> str:
        return self.secrets.scrub(text)

    def _emit(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        self._emit(self.scrub(text))

    def command(self, name: str, message: str = "", **properties: str) -> None:
        self._emit(
            command_line(name, self.scrub(message), **{key: self.scrub(value) for key, value in properties.items()})
        )

    def group(self, title: str) -> None:
        self.command("group", title)

    def endgroup(self) -> None:
        self.command("endgroup")

    def error(self, message: str, hint: str = "", title: str = "chrono-ci failed") -> None:
        self.command("error", f"{message}\nhint: {hint}" if hint else message, title=title)

    def warning(self, message: str, title: str = "") -> None:
        self.command("warning", message, title=title)
