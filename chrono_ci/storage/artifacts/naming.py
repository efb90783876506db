"""Artifact names: the service's rules (the toolkit's path-and-artifact-name-validation.ts), and a default name
unique per workflow run, run attempt, job and database."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping

from chrono_ci.errors import ConfigError
from chrono_ci.storage.artifacts.runtime import backend_ids_from_token

# The toolkit's rules (path-and-artifact-name-validation.ts); the service enforces the same.
FORBIDDEN_PATH_CHARACTERS: Mapping[str, str] = {
    '"': 'double quote (")',
    ":": "colon (:)",
    "<": "less than (<)",
    ">": "greater than (>)",
    "|": "vertical bar (|)",
    "*": "asterisk (*)",
    "?": "question mark (?)",
    "\r": "carriage return (\\r)",
    "\n": "line feed (\\n)",
}
FORBIDDEN_NAME_CHARACTERS: Mapping[str, str] = {
    **FORBIDDEN_PATH_CHARACTERS,
    "\\": "backslash (\\)",
    "/": "forward slash (/)",
}


def validate_artifact_name(name: str) -> None:
    """Raise ConfigError unless `name` is a name the artifact service accepts."""
    validate_name(name, "artifact name", "Set ARTIFACT_NAME to a name without them.")


def validate_name(name: str, what: str, fix: str) -> None:
    if not name:
        raise ConfigError(f"The {what} is empty.", hint=f"Artifact names cannot be empty. {fix}")
    found = [label for char, label in FORBIDDEN_NAME_CHARACTERS.items() if char in name]
    if found:
        raise ConfigError(
            f"Invalid {what} {name!r}: it contains {', '.join(found)}.",
            hint=f"Artifact names cannot contain any of: {', '.join(FORBIDDEN_NAME_CHARACTERS.values())}. " + fix,
        )


def default_artifact_name(kind: str, database: str, environ: Mapping[str, str]) -> str:
    """A name unique per workflow run, run attempt, job and database, valid under the service's rules.

    Names are unique per workflow *run*, and matrix legs share GITHUB_JOB, so the job's backend id (from the
    runtime token) tells them apart when it is available.
    """
    parts = ["chrono-ci", kind, database]
    for var in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB"):
        if value := environ.get(var, "").strip():
            parts.append(value)
    token = environ.get("ACTIONS_RUNTIME_TOKEN", "")
    if token:
        with contextlib.suppress(ConfigError):
            _, job_id = backend_ids_from_token(token)
            parts.append(re.sub(r"[^0-9A-Za-z]", "", job_id)[:8])
    return "-".join(cleaned for part in parts if (cleaned := _sanitize(part)))


def _sanitize(text: str) -> str:
    cleaned = "".join("-" if char in FORBIDDEN_NAME_CHARACTERS or char.isspace() else char for char in text)
    return re.sub(r"-{2,}", "-", cleaned).strip("-.")
