"""Secrets in what chrono-ci prints: the one scrubber every log line, error and report goes through, the forms a
secret can take on its way to a log, and the one place that asks the GitHub runner to mask a value.

Imports nothing from chrono_ci, so that every layer (storage clients, jobs, the Action) can use it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import TextIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "***"

# Credentials that were never registered still have a recognisable shape in free text (an error message from a
# library, a heartbeat payload): the user part of a URL, and `password=...` pairs.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_PASSWORD_PAIR = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by ***, longest first so that a secret containing another goes whole."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def scrub_credentials(text: str, secrets: Iterable[str] = ()) -> str:
    """`scrub`, then the shapes of credentials nobody registered: for text that leaves the machine."""
    text = _URL_USERINFO.sub(rf"\1{MASK}@", scrub(text, secrets))
    return _PASSWORD_PAIR.sub(rf"\1\2{MASK}", text)


class SecretSet:
    """The secrets known so far, kept longest first."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self.add(values)

    def add(self, values: Iterable[str]) -> list[str]:
        """Adds the values not known yet and returns them (so that a caller masks each one once)."""
        added = [value for value in dict.fromkeys(values) if value and value not in self._values]
        self._values = sorted([*self._values, *added], key=len, reverse=True)
        return added

    def scrub(self, text: str) -> str:
        return scrub(text, self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values


def escape_data(text: str) -> str:
    """Workflow command data escaping (@actions/core command.ts); the runner unescapes it back."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def mask_forms(value: str) -> list[str]:
    """A value as the runner should mask it: whole, and each line of a multi-line value (the runner matches
    a registered secret line by line in the log)."""
    value = value.strip()
    if not value:
        return []
    forms = [value]
    if "\n" in value:
        forms += [line.strip() for line in value.splitlines() if line.strip()]
    return forms


def add_mask(value: str, stream: TextIO) -> list[str]:
    """Asks the runner to mask `value` in every later log line (`::add-mask::`); returns the forms registered.

    The only place chrono-ci writes this command. The caller picks the stream: the runner reads workflow
    commands on stdout and stderr, and stdout may be holding a --json document.
    """
    forms = mask_forms(value)
    for form in forms:
        stream.write(f"::add-mask::{escape_data(form)}\n")
    stream.flush()
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
