"""Artifact names: the service's rules (the toolkit's path-and-artifact-name-validation.ts), the length a file
name can have, and the name an archive's artifact gets.

An artifact holds one archive, uploaded as itself, and GitHub names the downloaded file after the artifact: the
name therefore ends with the archive's extension (`.sql.zst`, `.sql.gz.age`...), so that the file decompresses
as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from chrono_ci.errors import ConfigError

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
# The downloaded file is named after the artifact: no longer than most file systems allow a file name.
MAX_NAME_BYTES = 255


def validate_artifact_name(name: str) -> None:
    """Raise ConfigError unless `name` is a name the artifact service accepts and a file can have."""
    validate_name(name, "artifact name", "Set ARTIFACT_NAME to a name without them.")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ConfigError(
            f"The artifact name {name[:40]!r}... is {len(name.encode())} bytes long, more than {MAX_NAME_BYTES}.",
            hint="GitHub names the downloaded file after the artifact, and file systems refuse names longer than "
            f"{MAX_NAME_BYTES} bytes: set a shorter ARTIFACT_NAME.",
        )


def validate_name(name: str, what: str, fix: str) -> None:
    if not name:
        raise ConfigError(f"The {what} is empty.", hint=f"Artifact names cannot be empty. {fix}")
    found = [label for char, label in FORBIDDEN_NAME_CHARACTERS.items() if char in name]
    if found:
        raise ConfigError(
            f"Invalid {what} {name!r}: it contains {', '.join(found)}.",
            hint=f"Artifact names cannot contain any of: {', '.join(FORBIDDEN_NAME_CHARACTERS.values())}. " + fix,
        )


def artifact_name_for(given: str, extension: str, kind: str | None = None) -> str:
    """The artifact name for a given ARTIFACT_NAME: `kind` appended (when one run backs up several databases,
    whose artifacts cannot share a name), then the archive's extension unless the name already ends with it.

    `nightly` gives `nightly.sql.zst`, or `nightly-postgres.sql.zst` with a kind; `nightly.sql.zst` stays as it
    is, or becomes `nightly-postgres.sql.zst`. Without a given name, an artifact is named after its archive.
    """
    base = given.removesuffix(extension) if given.endswith(extension) and given != extension else given
    if kind:
        base = f"{base}-{kind}"
    return base + extension
