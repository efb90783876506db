"""Replay a plain-format archive into one database, in one transaction, proven before it commits.

chrono-ci runs the archive itself, over one libpq connection, instead of handing it to psql:

- each statement the scanner finds is judged (chrono_ci.pipeline.dumprules) and sent on its own through the extended
  query protocol, where the server refuses a message holding more than one statement, so a statement can never
  smuggle a second one past the judge; psql commands are never run, because there is no psql;
- after each statement the connection must still be inside the restore's transaction, or the restore stops;
- COPY data streams through in pieces, never held whole;
- after the last byte, the stored bytes' sha256 and the SQL's size are compared with the archive's record, and
  every table's row count with the record's, inside the same transaction; only then is COMMIT sent (a
  restore-verification rolls back instead). A signal or a kill before that leaves the target exactly as it was.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.config.options import Compression
from chrono_ci.errors import AgeError, AgeKeyError, ExitCode, Interrupted, RestoreFailed, VerificationFailed
from chrono_ci.pipeline.dumprules import COPY, MAX_STATEMENT, RUN, DumpReader, Verdict
from chrono_ci.pipeline.read import ArchiveContents, Decryptor, read_archive
from chrono_ci.pipeline.sqlscan import CopyData, CopyEnd
from chrono_ci.restore.row_counts import count_rows
from chrono_ci.restore.session import (
    ConnectionLost,
    ServerSession,
    SessionRules,
    StatementFailed,
    blocked_by_sessions,
    terminateother_sessions,
)
from chrono_ci.source.target import DatabaseTarget
from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.verify.integrity import Check, IntegrityReport, contents_checks, damaged_checks

_MISSING_EXTENSION = re.compile(
    r'extension "([^"]+)" is not available|could not open extension control file "[^"]*/([^/"]+)\.control"'
)
DISK_FULL = "53100"
LOCK_NOT_AVAILABLE = "55P03"


class ArchiveRefused(VerificationFailed):
    """The archive holds what pg_dump never writes (a psql command, transaction control, ...): not restored."""

    exit_code = ExitCode.UNTRUSTED


class CountMismatch(VerificationFailed):
    """Restored row counts differ from the record's: (expected, found) per table."""

    def __init__(self, mismatches: dict[str, tuple[int | None, int | None]], message: str, hint: str) -> None:
        super().__init__(message, hint)
        self.mismatches = mismatches


class MissingExtensions(RestoreFailed):
    """The target lacks extensions the backup uses: a property of the server, not damage in the archive."""

    def __init__(self, names: list[str], message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.names = names


@dataclass(frozen=True)
class Expected:
    """What the archive must hold, checked as it is replayed: its record's values, or, where the record lacks one
    (no record: `--allow-unlisted`), what the integrity test read from the same file a moment before."""

    sha256: str | None = None
    raw_size: int | None = None
    tables: dict[str, int] | None = None
    size: int | None = None  # the stored bytes'

    @staticmethod
    def of(record: ArchiveRecord | None, contents: ArchiveContents | None) -> Expected:
        """What a replay must end with: the record's sha256, raw size and row counts, or what the integrity check
        counted where the record has none."""
        sha256 = record.sha256 if record is not None else None
        raw = record.raw_size_bytes if record is not None else None
        tables = record.tables if record is not None else None
        size = record.size_bytes if record is not None else None
        return Expected(
            sha256=sha256 if sha256 is not None else contents.stored_sha256 if contents else None,
            raw_size=raw if raw is not None else contents.raw_bytes if contents else None,
            tables=dict(tables) if tables is not None else dict(contents.tables) if contents else None,
            size=size if size is not None else contents.stored_bytes if contents else None,
        )


@dataclass
class ReplayOutcome:
    tables: dict[str, int]  # counted inside the transaction, before it committed (or rolled back)
    statements: int = 0
    rows_loaded: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    committed: bool = False
    proven: str = ""  # what the profile's own proof found, for the report


Lookup = Callable[[str, Sequence[str]], list[list[str | None]]]


@dataclass(frozen=True)
class Proof:
    """A profile's own check of the restored database, run inside the transaction before COMMIT.

    `check` answers (problems, summary): any problem rolls the restore back."""

    what: str  # what is being proven, for the message: "these objects of yours on Supabase's tables"
    check: Callable[[Lookup], tuple[list[str], str]]


def replay_archive(
    archive: Path,
    compression: Compression,
    target: DatabaseTarget,
    *,
    expected: Expected,
    profile: str = "postgres",
    preamble: Sequence[str] = (),
    commit: bool = True,
    decrypt: Callable[[], Decryptor] | None = None,
    sessions: SessionRules | None = None,
    proof: Proof | None = None,
    integrity: IntegrityReport | None = None,
) -> ReplayOutcome:
    """Restore `archive` into `target` in one transaction, proven before COMMIT (or, with commit=False, rolled
    back once proven: a restore-verification). Raises (target untouched): ArchiveRefused, VerificationFailed,
    RestoreFailed, MissingExtensions, Interrupted.

    `integrity` receives the archive's named checks as the stream found them (checksum, decompression, trailer,
    contents, raw size, row counts), whether the replay then succeeds or raises."""
    integrity = integrity if integrity is not None else IntegrityReport(file=archive.name)
    rules = sessions or SessionRules()
    session = ServerSession(target)
    committed = False
    commit_sent = False
    try:
        server_major = session.pgconn.server_version // 10000
        if server_major >= 14:
            # The server notices a vanished client within a second, even inside a long CREATE INDEX.
            session.execute("SET client_connection_check_interval = '1s'")
        if rules.terminate_sessions:
            terminateother_sessions(session)
        lock_timeout = f"SET LOCAL lock_timeout = '{int(rules.lock_timeout_seconds * 1000)}ms'"
        session.execute("BEGIN")
        session.execute(lock_timeout)
        for statement in preamble:
            _run_ours(session, statement, target)
        session.execute(lock_timeout)  # the preamble may have reset it
        outcome = _stream(session, archive, compression, target, expected, profile, server_major, decrypt, integrity)
        # Deferred checks and triggers run now, before the proof, so that COMMIT has nothing left that can fail.
        session.execute("SET CONSTRAINTS ALL IMMEDIATE")
        tables = expected.tables if expected.tables is not None else outcome.tables
        found = count_rows(session, sorted(tables))
        mismatches = {name: (tables[name], found.get(name)) for name in tables if tables[name] != found.get(name)}
        if mismatches:
            shown = ", ".join(f"{n}: {e} in the backup, {f} restored" for n, (e, f) in list(mismatches.items())[:8])
            raise CountMismatch(
                dict(mismatches),
                f"Row counts differ from the backup's record after the restore ({shown}); it was rolled back and "
                "nothing changed.",
                hint="The archive does not hold what its record says: choose another archive.",
            )
        outcome.tables = {name: int(found[name] or 0) for name in tables}
        if proof is not None:
            problems, outcome.proven = proof.check(session.values)
            if problems:
                raise VerificationFailed(
                    f"The restore did not bring back {proof.what}: {', '.join(problems)}; it was rolled back and "
                    "nothing changed.",
                    hint="The archive lists them but its SQL did not create them: it was altered. Choose another "
                    "archive.",
                )
        outcome.warnings = list(session.warnings)
        if commit:
            commit_sent = True
            session.execute("COMMIT")
            committed = True
        else:
            session.execute("ROLLBACK")
        outcome.committed = committed
        return outcome
    except Interrupted as stop:
        if commit_sent and not committed:
            stop.message = (
                "Stopped by a signal while COMMIT was on its way: the restore may or may not have been committed."
            )
            stop.hint = "Look at the target before you use it; the safety backup holds the database as it was."
        else:
            stop.message = "Stopped by a signal: the restore's transaction was rolled back; nothing was committed."
            stop.hint = "The target is exactly as it was. Run again when ready."
        raise
    except StatementFailed as failure:
        raise explain_failure(failure, target, session.warnings) from None
    except ConnectionLost as lost:
        if commit_sent:
            raise RestoreFailed(
                f"The connection to {target.display()} broke while COMMIT was on its way ({lost}): the restore may "
                "or may not have been committed.",
                hint="Look at the target before you use it; the safety backup holds the database as it was.",
            ) from None
        raise RestoreFailed(
            f"The connection to {target.display()} broke during the restore ({lost}). The server rolls back an "
            "unfinished transaction: nothing was committed, and the database is exactly as before.",
            hint="Check that the server is up and that nothing ends sessions (an admin, a pooler, a timeout), then "
            "run again.",
        ) from None
    finally:
        if committed or not commit:
            session.close()
        else:
            session.abort()


def _run_ours(session: ServerSession, statement: str, target: DatabaseTarget) -> None:
    """A statement of chrono-ci's own (the preamble that empties the target); a lock wait names who holds it."""
    try:
        session.execute(statement)
    except StatementFailed as failure:
        if failure.sqlstate == LOCK_NOT_AVAILABLE:
            raise blocked_by_sessions(session, target) from None
        raise


def _stream(
    session: ServerSession,
    archive: Path,
    compression: Compression,
    target: DatabaseTarget,
    expected: Expected,
    profile: str,
    server_major: int,
    decrypt: Callable[[], Decryptor] | None,
    integrity: IntegrityReport,
) -> ReplayOutcome:
    """Send the archive, and prove it as it streams: everything a full read before the restore would check
    (chrono_ci.verify.integrity) is known once its last byte is read, before COMMIT.

    A server error or a COPY the server counts differently stops the sending but not the reading: the rest of the
    archive is read and judged, so that damage or a refused statement later in the file is reported as such
    (exit 7 or 10), as a full read before the restore would have, rather than as a failed restore (exit 8)."""
    from psycopg import pq

    reader = DumpReader(profile, server_major=server_major, keep=MAX_STATEMENT, restoring=True)
    outcome = ReplayOutcome(tables={})
    copy_line = 0
    stopped: StatementFailed | ArchiveRefused | None = None  # the first failure; nothing is sent after it

    def apply(items: list[Verdict | CopyData | CopyEnd]) -> None:
        nonlocal copy_line
        for item in items:
            if isinstance(item, CopyData):
                session.write(item.data)
            elif isinstance(item, CopyEnd):
                loaded = session.end_copy(copy_line)
                if loaded != item.rows:
                    raise ArchiveRefused(
                        f"line {copy_line}: the server loaded {loaded} rows where the archive holds {item.rows}: "
                        "its COPY data is not what pg_dump writes. The restore was rolled back.",
                        hint="Do not restore this archive; choose another from `chrono-ci recovery list`.",
                    )
                outcome.rows_loaded += loaded
            else:
                line = item.event.line_of_body()
                if item.action == COPY:
                    copy_line = line
                    session.copy_in(item.event.body(), line)
                elif item.action == RUN:
                    # Without pg_dump's comment lines: what the server logs and pg_stat_activity show is the SQL.
                    session.execute(item.event.body(), line)
                    if session.transaction_status != pq.TransactionStatus.INTRANS:
                        raise ArchiveRefused(
                            f"line {line}: the statement left the restore's transaction. The restore was stopped "
                            "there and nothing was committed.",
                            hint="Do not restore this archive; choose another from `chrono-ci recovery list`.",
                        )
                outcome.statements += 1

    def take(items: list[Verdict | CopyData | CopyEnd]) -> None:
        nonlocal stopped
        if stopped is None:
            try:
                apply(items)
            except (StatementFailed, ArchiveRefused) as failure:
                stopped = failure
                # The transaction is lost: end it now, so its locks are not held while the rest is read.
                with contextlib.suppress(StatementFailed, ConnectionLost):
                    session.execute("ROLLBACK")
        if reader.refusal is not None:
            integrity.checks = [Check("contents", False, f"refused: {reader.refusal.message()}")]
            raise ArchiveRefused(
                f"{archive.name} was refused: {reader.refusal.message()}. The restore was rolled back before "
                "COMMIT: nothing was changed, the target is exactly as it was.",
                hint="pg_dump never writes this: the archive was altered or planted. Do not restore it; choose "
                "another archive from `chrono-ci recovery list`, and see SECURITY.md.",
            )

    with archive.open("rb") as handle:
        counted = _CountingReader(handle)
        try:
            contents = read_archive(
                counted,  # type: ignore[arg-type]
                compression,
                on_raw=lambda data: take(reader.feed(data)),
                count_rows=False,
                decryptor=decrypt() if decrypt is not None else None,
                # A decompression bomb stops where its record says the SQL ends.
                max_raw=expected.raw_size,
            )
        except (ArchiveRefused, AgeKeyError):
            raise
        except (VerificationFailed, AgeError) as damage:
            with contextlib.suppress(OSError):
                while counted.read(CHUNK_SIZE):
                    pass
            integrity.checks = damaged_checks(damage, counted.count, expected.size)
            raise _damaged(archive, integrity) from None
        take(reader.finish())
    contents = replace(contents, tables=dict(reader.tables), refusal=reader.refusal)
    integrity.contents = contents
    integrity.checks = contents_checks(
        contents, compression, sha256=expected.sha256, raw_size=expected.raw_size, tables=expected.tables
    )
    if not integrity.ok:
        raise _damaged(archive, integrity)
    if stopped is not None:
        raise stopped
    outcome.skipped = list(reader.skipped)
    outcome.tables = dict(reader.tables)
    return outcome


def _damaged(archive: Path, integrity: IntegrityReport) -> VerificationFailed:
    failed = integrity.failed()
    return VerificationFailed(
        f"{archive.name} failed its integrity test as it streamed into the restore's transaction ("
        + "; ".join(f"{check.name}: {check.detail}" for check in failed)
        + "). The restore was rolled back before COMMIT: nothing was changed.",
        hint="Choose another archive from `chrono-ci recovery list`.",
    )


class _CountingReader:
    """Counts the stored bytes, so that a damaged archive's size can be told too."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        return data


def explain_failure(failure: StatementFailed, target: DatabaseTarget, warnings: Sequence[str] = ()) -> RestoreFailed:
    # A Supabase scratch skeleton reports each extension it could not create as a WARNING before the failure.
    missing = missing_extensions("\n".join([failure.primary, failure.detail, *warnings]))
    if missing:
        return MissingExtensions(
            missing,
            f"The server at {target.display()} lacks the extension(s) {', '.join(missing)} that the backup uses; "
            "the transaction was rolled back and nothing changed.",
            hint="Install the extension's package on that server (or use a server that has it), then run again. "
            "This is not damage in the archive.",
        )
    if failure.sqlstate == DISK_FULL:
        return RestoreFailed(
            f"The server at {target.display()} ran out of disk space during the restore, which was rolled back; "
            f"the database is exactly as before:\n{failure.describe()}",
            hint="Free space on the database server (or use a larger one) and run again. This is not damage in the "
            "archive.",
        )
    return RestoreFailed(
        f"The restore into {target.display()} failed and was rolled back; the database is exactly as before:\n"
        f"{failure.describe()}",
        hint="Read the server's message above: a statement the target rejects (an older server, a missing role "
        "or extension), or a lost connection.",
    )


def missing_extensions(text: str) -> list[str]:
    return sorted({a or b for a, b in _MISSING_EXTENSION.findall(text)})
