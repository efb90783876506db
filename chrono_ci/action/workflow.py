"""Workflow commands (::add-mask::, ::error::, ::group:: ...) as the toolkit writes them, and the Action's log:
one stream, masks registered before any line that could carry a secret, every line scrubbed."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import IO
from urllib.parse import parse_qsl, quote, unquote, urlsplit


def escape_data(text: str) -> str:
    """The toolkit's escaping for a command's message (command.ts)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """The toolkit's escaping for a command's property values, where `:` and `,` are separators."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command_line(name: str, message: str = "", **properties: str) -> str:
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items() if value)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


class Log:
    """Everything the Action prints goes to stdout, one stream, so that masks are registered before any line
    that could carry a secret, whatever the order in which the runner reads two streams."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.secrets: list[str] = []

    def mask(self, values: Iterable[str]) -> None:
        for value in values:
            for secret in _mask_forms(value):
                if secret not in self.secrets:
                    self.secrets.append(secret)
                    self._emit(command_line("add-mask", secret))
        self.secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

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


def _mask_forms(value: str) -> list[str]:
    """A value as the runner should mask it: whole, and each line of a multi-line value (the runner matches
    a registered secret line by line in the log)."""
    value = value.strip()
    if not value:
        return []
    forms = [value]
    if "\n" in value:
        forms += [line.strip() for line in value.splitlines() if len(line.strip()) > 0]
    return forms


def url_secrets(url: str) -> list[str]:
    """The whole URL, and its password in every spelling that may reach a log: as written in the URL
    (percent-encoded), decoded, and encoded the canonical way."""
    url = url.strip()
    if not url:
        return []
    found = [url]
    written: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password is not None:
            written.append(parts.password)
        written += [value for key, value in parse_qsl(parts.query, keep_blank_values=True) if key == "password"]
    # A password with a raw @, / or # defeats urlsplit; the last @ before the path still ends the user part.
    rest = url.partition("://")[2]
    userinfo = rest.rpartition("@")[0]
    if ":" in userinfo:
        written.append(userinfo.partition(":")[2])
    for password in written:
        decoded = unquote(password)
        for form in (password, decoded, quote(decoded, safe="")):
            if form and form not in found:
                found.append(form)
    return found
