"""One error hierarchy: every failure the user can meet carries a message, a hint and an exit code.

The CLI catches ChronoError in one place and prints message and hint; anything else is a bug and shows a
traceback only with --debug.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # some of several backups failed (`backup all`), or a check reported failures
    CONFIG = 2  # a setting, option or argument is invalid (also Typer's own usage errors)
    CONNECTION = 3  # the database could not be reached or refused us
    TOOL = 4  # pg_dump/psql missing, or too old for the server; an extra (s3, age, embedded) not installed
    STORAGE = 5  # the backup folder or a remote store could not be written or read
    DUMP = 6  # pg_dump failed or produced an incomplete dump
    VERIFY = 7  # an archive failed its integrity or restore check
    RESTORE = 8  # a restore failed (the target was left as it was)
    REFUSED = 9  # a confirmation was missing or declined
    UNTRUSTED = 10  # an archive was refused: no trusted record vouches for it, or it holds what pg_dump never
    # writes (a psql command, transaction control)
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM, what a cancelled CI job sends


class ChronoError(Exception):
    """A failure with what went wrong (message), what to do (hint) and how the process exits."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str = "", exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigError(ChronoError):
    exit_code = ExitCode.CONFIG


class ConnectionFailed(ChronoError):
    exit_code = ExitCode.CONNECTION


class ToolMissing(ChronoError):
    exit_code = ExitCode.TOOL


class MissingExtra(ToolMissing):
    """A feature whose optional dependencies (an extra: s3, age, embedded) are not installed."""


class StorageError(ChronoError):
    exit_code = ExitCode.STORAGE


class ObjectNotFound(StorageError):
    """The one not-found error every storage backend raises."""


class DumpFailed(ChronoError):
    exit_code = ExitCode.DUMP


class VerificationFailed(ChronoError):
    exit_code = ExitCode.VERIFY


class RestoreFailed(ChronoError):
    exit_code = ExitCode.RESTORE


class Refused(ChronoError):
    exit_code = ExitCode.REFUSED


class Untrusted(ChronoError):
    """An archive no trusted record vouches for: no record, an implausible one, or (with BACKUP_SIGNING_KEY) an
    unsigned or badly signed one. Anyone who can write the backup folder or the bucket could have put it there."""

    exit_code = ExitCode.UNTRUSTED


class AgeError(ChronoError):
    """An age file that cannot be read: damage exits VERIFY, a key that does not fit exits CONFIG.

    Defined here, not in chrono_ci.crypto, so that code which only handles it need not load pyrage (the optional
    `age` extra).
    """

    exit_code = ExitCode.VERIFY


class AgeKeyError(AgeError, ConfigError):
    """A recipient or identity that does not parse or does not fit the file: a setting to fix."""

    exit_code = ExitCode.CONFIG


class Interrupted(ChronoError):
    """Raised from a signal handler so that every `finally` cleans up before the process exits.

    A library may swallow it where it lands (psycopg's import tries its implementations under `except
    Exception`), so the handler also leaves it in `requested`, and a job calls `raise_if_requested()` before a
    wait that only new data would end (reading pg_dump's output)."""

    exit_code = ExitCode.TERMINATED
    requested: ClassVar[Interrupted | None] = None

    @classmethod
    def raise_if_requested(cls) -> None:
        if cls.requested is not None:
            raise cls.requested
