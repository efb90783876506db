"""One connection to the restore's target, driven at the protocol level: one statement per message, waits that a
signal can break, the server's errors kept whole; and the other sessions on the target, which a restore names,
waits for or ends.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chrono_ci.errors import ChronoError, RestoreFailed
from chrono_ci.source.target import DatabaseTarget, explain_connection_error

if TYPE_CHECKING:
    # psycopg is imported by the code that talks to a server: the command starts without it (a third of a second).
    from psycopg import pq
    from psycopg.pq.abc import PGresult

_WAIT_SLICE = 0.5  # seconds between two looks at the socket: a signal is handled at once, whatever the server does


class ConnectionLost(Exception):
    """The connection to the server broke (the server went away, or a session was terminated)."""


class StatementFailed(Exception):
    """The server rejected a statement (or a COPY's data)."""

    def __init__(self, result: PGresult, line: int | None) -> None:
        from psycopg import pq

        self.sqlstate = _field(result, pq.DiagnosticField.SQLSTATE)
        self.primary = _field(result, pq.DiagnosticField.MESSAGE_PRIMARY) or _text(result.error_message).strip()
        self.detail = _field(result, pq.DiagnosticField.MESSAGE_DETAIL)
        self.server_hint = _field(result, pq.DiagnosticField.MESSAGE_HINT)
        self.line = line
        super().__init__(self.primary)

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        text = f"{where}ERROR: {self.primary}"
        if self.detail:
            text += f"\nDETAIL: {self.detail}"
        if self.server_hint:
            text += f"\nHINT: {self.server_hint}"
        return text


def _field(result: PGresult, which: pq.DiagnosticField) -> str:
    value = result.error_field(which)
    return _text(value) if value else ""


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


class ServerSession:
    """One connection driven at the protocol level: one statement per message, waits that a signal can break."""

    def __init__(self, target: DatabaseTarget, application: str = "chrono-ci restore") -> None:
        from psycopg import pq
        from psycopg.conninfo import make_conninfo

        args = target.conninfo()
        args.setdefault("connect_timeout", "10")
        args["application_name"] = application
        self.target = target
        self.pgconn = pq.PGconn.connect(make_conninfo("", **args).encode())
        if self.pgconn.status != pq.ConnStatus.OK:
            message = _text(self.pgconn.error_message)
            self.pgconn.finish()
            raise explain_connection_error(message, target)
        self.warnings: list[str] = []
        self.pgconn.notice_handler = self._notice
        self.in_copy = False

    def _notice(self, result: PGresult) -> None:
        from psycopg import pq

        severity = _field(result, pq.DiagnosticField.SEVERITY_NONLOCALIZED)
        if severity == "WARNING" and len(self.warnings) < 200:
            self.warnings.append(_field(result, pq.DiagnosticField.MESSAGE_PRIMARY))

    @property
    def backend_pid(self) -> int:
        return self.pgconn.backend_pid

    @property
    def transaction_status(self) -> pq.TransactionStatus:
        from psycopg import pq

        return pq.TransactionStatus(self.pgconn.transaction_status)

    def execute(self, sql: bytes | str, line: int | None = None, params: Sequence[str] = ()) -> PGresult:
        """Run one statement; raise StatementFailed with the server's message when it fails."""
        from psycopg import pq

        query = sql.encode() if isinstance(sql, str) else sql
        with self._connection_errors():
            self.pgconn.send_query_params(query, [value.encode() for value in params] if params else None)
        last: PGresult | None = None
        failure: PGresult | None = None
        for result in self._results():
            if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
                failure = result
            last = result
            if result.status == pq.ExecStatus.COPY_IN:
                self.in_copy = True
                return result
        if failure is not None:
            raise StatementFailed(failure, line)
        assert last is not None
        return last

    def values(self, sql: str, params: Sequence[str] = ()) -> list[list[str | None]]:
        """The rows of one query, as text; `params` fill $1, $2, ..."""
        result = self.execute(sql, params=params)
        return [
            [None if (v := result.get_value(row, col)) is None else _text(v) for col in range(result.nfields)]
            for row in range(result.ntuples)
        ]

    def copy_in(self, sql: bytes, line: int) -> None:
        from psycopg import pq

        result = self.execute(sql, line)
        if result.status != pq.ExecStatus.COPY_IN:
            raise RestoreFailed(f"line {line}: the server did not start taking COPY data.")

    def write(self, data: memoryview | bytes) -> None:
        with self._connection_errors():
            sent = self.pgconn.put_copy_data(data)
        if sent != 1:
            raise ConnectionLost(_text(self.pgconn.error_message))

    def end_copy(self, line: int) -> int:
        """Close the COPY; the server's own count of the rows it loaded."""
        from psycopg import pq

        self.in_copy = False
        with self._connection_errors():
            ended = self.pgconn.put_copy_end()
        if ended != 1:
            raise ConnectionLost(_text(self.pgconn.error_message))
        rows = 0
        failure: PGresult | None = None
        for result in self._results():
            if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
                failure = result
            elif result.command_tuples is not None:
                rows = result.command_tuples
        if failure is not None:
            raise StatementFailed(failure, line)
        return rows

    def _results(self) -> Iterator[PGresult]:
        """The results of what was sent, waiting on the socket in slices so that a signal is never held up."""
        from psycopg import pq

        while True:
            self._wait_ready()
            result = self.pgconn.get_result()
            if result is None:
                return
            yield result
            if result.status == pq.ExecStatus.COPY_IN:
                return

    def _wait_ready(self) -> None:
        with self._connection_errors():
            while True:
                self.pgconn.consume_input()
                if not self.pgconn.is_busy():
                    return
                select.select([self.pgconn.socket], [], [], _WAIT_SLICE)

    @contextlib.contextmanager
    def _connection_errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            raise ConnectionLost(str(exc).strip()) from None

    def abort(self) -> None:
        """Stop whatever the server is doing for us and hang up: an open transaction is rolled back."""
        from psycopg import pq

        with contextlib.suppress(Exception):
            if self.transaction_status == pq.TransactionStatus.ACTIVE or self.in_copy:
                self.pgconn.get_cancel().cancel()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pgconn.finish()


@dataclass(frozen=True)
class SessionRules:
    """How the restore treats other sessions on the target."""

    lock_timeout_seconds: float = 10.0
    terminate_sessions: bool = False


def terminateother_sessions(session: ServerSession) -> None:
    """--terminate-sessions: end every other session on the target database before the restore starts."""
    others = other_sessions(session)
    if not others:
        return
    try:
        session.execute(
            "SELECT pg_catalog.pg_terminate_backend(pid, 5000) FROM pg_catalog.pg_stat_activity "
            "WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()"
        )
    except StatementFailed as failure:
        raise RestoreFailed(
            f"--terminate-sessions: the role {session.target.user} may not end the other sessions on "
            f"{session.target.display()} ({failure.primary}): {sessions_text(others)}.",
            hint="Restore as the database owner or a superuser, grant the role pg_signal_backend, or stop the "
            "application yourself. Nothing was touched.",
        ) from None


def blocked_by_sessions(session: ServerSession, target: DatabaseTarget) -> RestoreFailed:
    """The lock wait ran out: name the sessions that hold the target, from a second connection."""
    others: list[list[str | None]] = []
    with contextlib.suppress(ChronoError, Exception):
        probe = ServerSession(target, application="chrono-ci restore (lock check)")
        try:
            others = [row for row in other_sessions(probe) if row[0] != str(session.backend_pid)]
        finally:
            probe.close()
    listed = sessions_text(others) if others else "sessions that have since ended"
    return RestoreFailed(
        f"The restore could not lock the objects of {target.display()} in time: other sessions use them "
        f"({listed}). The restore was rolled back; nothing changed.",
        hint="Stop the application (or run the restore when it is idle), or add --terminate-sessions to end those "
        "sessions first; --lock-timeout sets how long to wait.",
    )


def other_sessions(session: ServerSession) -> list[list[str | None]]:
    return session.values(
        "SELECT pid::text, usename, application_name, state, "
        "COALESCE(to_char(now() - xact_start, 'HH24:MI:SS'), '') "
        "FROM pg_catalog.pg_stat_activity "
        "WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid() "
        # Another role's sessions show no backend_type (or state) to a role without pg_read_all_stats.
        "AND COALESCE(backend_type, 'client backend') = 'client backend' ORDER BY pid"
    )


def sessions_text(rows: list[list[str | None]]) -> str:
    shown = [
        f"pid {pid} ({user or 'another role'}, {app or 'no application name'}, {state or 'state not visible'}"
        + (f", in a transaction for {since}" if since else "")
        + ")"
        for pid, user, app, state, since in rows[:8]
    ]
    more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
    return "; ".join(shown) + more
