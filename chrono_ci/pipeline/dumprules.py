"""What chrono-ci accepts from a plain-format dump, judged statement by statement as the SQL streams.

An archive is untrusted input: anyone who can write the backup folder or the bucket can plant one. A restore
therefore runs only SQL that pg_dump (or chrono-ci's Supabase profile) could have written. Refused, with the
line where it stands:

- psql commands (a backslash outside quotes, comments and COPY data): pg_dump writes none but its own
  `\\restrict KEY` / `\\unrestrict KEY` lines, which are skipped;
- transaction control (BEGIN, COMMIT, ...), which would end the restore's one transaction; the BEGIN/COMMIT pair
  pg_dump puts around large-object data is skipped;
- CREATE / ALTER / DROP DATABASE and ALTER SYSTEM, which reach beyond the one target database;
- any COPY but pg_dump's `COPY table (columns) FROM stdin;` (PROGRAM, a server file, TO);
- LOAD (a server library), and in a PostgreSQL archive DO, CALL and role statements, which pg_dump never writes
  in a database dump;
- a statement longer than MAX_STATEMENT outside COPY data, and text pg_dump never leaves (after `FROM stdin;`
  on the COPY line, a COPY block or a statement the stream ends inside).

The same rules run on the backup's own stream, so a backup that a restore would refuse never counts as made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chrono_ci.pipeline.sqlscan import CopyData, CopyEnd, Event, MetaCommand, SqlScanner, Statement, copy_table

MAX_STATEMENT = 64 << 20  # outside COPY data; pg_dump's largest statements are function bodies and views
COUNTING_KEEP = 256 << 10  # what the row counter keeps of a statement: a COPY line of 1,600 quoted columns fits

RUN, COPY, SKIP = "run", "copy", "skip"

_RESTRICT_LINE = re.compile(rb"\\(?:un)?restrict [A-Za-z0-9]+[ \t\r]*\Z")
_TRANSACTION_CONTROL = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE"}
_DATABASE_LEVEL = {("CREATE", "DATABASE"), ("ALTER", "DATABASE"), ("DROP", "DATABASE"), ("ALTER", "SYSTEM")}
_ROLE_WORDS = {"ROLE", "USER", "GROUP"}
_BLOBS_HEADER = b"; Type: BLOBS;"


@dataclass(frozen=True)
class Refusal:
    """Why an archive is refused, and where."""

    line: int
    what: str
    why: str

    def message(self) -> str:
        return f"line {self.line} of the SQL holds {self.what}: {self.why}"


@dataclass(frozen=True)
class Verdict:
    action: str  # RUN | COPY | SKIP
    event: Statement
    table: str | None = None  # for COPY


@dataclass
class DumpReader:
    """Reads a dump through the one scanner: counts every COPY block's rows, judges every statement.

    `profile` is "postgres" or "supabase" (whose archives hold chrono-ci's DO blocks and role statements).
    `server_major`, when known (a restore), lets the statements an older server cannot take be skipped.
    The first refusal is kept in `refusal`, and nothing after it is judged or counted.
    """

    profile: str = "postgres"
    server_major: int | None = None
    keep: int = COUNTING_KEEP
    restoring: bool = False  # the verdicts will be run: settings that would undo the restore's own are skipped
    tables: dict[str, int] = field(default_factory=dict)
    refusal: Refusal | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scanner = SqlScanner(keep=self.keep)
        self._copy_table: str | None = None
        self._in_blobs = False

    def feed(self, data: bytes) -> list[Verdict | CopyData | CopyEnd]:
        return self._judge_all(self.scanner.feed(data))

    def finish(self) -> list[Verdict | CopyData | CopyEnd]:
        return self._judge_all(self.scanner.finish())

    def _judge_all(self, events: list[Event]) -> list[Verdict | CopyData | CopyEnd]:
        out: list[Verdict | CopyData | CopyEnd] = []
        for event in events:
            if self.refusal is not None:
                break  # nothing after a refusal is ever run
            if isinstance(event, CopyData):
                out.append(event)
            elif isinstance(event, CopyEnd):
                if self._copy_table is not None:
                    self.tables[self._copy_table] = self.tables.get(self._copy_table, 0) + event.rows
                self._copy_table = None
                out.append(event)
            elif isinstance(event, Statement):
                verdict = self._judge(event)
                if verdict is not None:
                    out.append(verdict)
            elif isinstance(event, MetaCommand):
                self._judge_meta(event)
            else:
                self._refuse(event.line, _shown(event.reason.encode()), "pg_dump never writes that")
        return out

    def _refuse(self, line: int, what: str, why: str) -> None:
        if self.refusal is None:
            self.refusal = Refusal(line, what, why)

    def _judge_meta(self, event: MetaCommand) -> None:
        if event.at_statement_start and _RESTRICT_LINE.match(event.text):
            return  # pg_dump's own guard line (CVE-2025-8714); chrono-ci runs no psql commands at all
        self._refuse(
            event.line,
            f"a psql command ({_shown(event.text)})",
            "pg_dump writes none there, and psql would run it on the machine doing the restore",
        )

    def _judge(self, statement: Statement) -> Verdict | None:
        line = statement.line_of_body()
        if statement.size > MAX_STATEMENT:
            self._refuse(
                line,
                f"a statement of {statement.size >> 20} MiB outside COPY data",
                f"more than {MAX_STATEMENT >> 20} MiB; pg_dump writes table data as COPY rows",
            )
            return None
        if not statement.complete:
            if not statement.is_empty():
                self._refuse(line, "a statement without its closing `;`", "the SQL ends in the middle of it")
            return None
        words = statement.keywords(3)
        if not words:
            return None if statement.is_empty() else Verdict(RUN, statement)
        first = words[0]
        shown = _shown(statement.body())
        if first in _TRANSACTION_CONTROL:
            if self._large_object_transaction(statement, words):
                return Verdict(SKIP, statement)
            self._refuse(
                line,
                f"transaction control ({shown})",
                "it would end or split the restore's one transaction; pg_dump never writes it there",
            )
            return None
        if tuple(words[:2]) in _DATABASE_LEVEL:
            self._refuse(line, f"{shown}", "it reaches beyond the one target database; pg_dump never writes it")
            return None
        if first == "COPY":
            table = copy_table(statement.text)
            if table is None:
                self._refuse(
                    line,
                    f"a COPY other than `COPY table (columns) FROM stdin;` ({shown})",
                    "it could read or write files on the server or run a program there",
                )
                return None
            self._copy_table = table
            return Verdict(COPY, statement, table)
        if first == "LOAD":
            self._refuse(line, f"{shown}", "it loads a library into the server; pg_dump never writes it")
            return None
        if self.profile != "supabase" and (
            first in ("DO", "CALL") or (first in ("CREATE", "ALTER", "DROP") and words[1:2] and words[1] in _ROLE_WORDS)
        ):
            self._refuse(line, f"{shown}", "pg_dump never writes it in a database dump")
            return None
        if self.server_major is not None and self.server_major < 17 and words[:2] == ["SET", "TRANSACTION_TIMEOUT"]:
            self.skipped.append(f"line {line}: SET transaction_timeout (the target is older than PostgreSQL 17)")
            return Verdict(SKIP, statement)
        if self.restoring and words[:2] == ["SET", "LOCK_TIMEOUT"]:
            # pg_dump's `SET lock_timeout = 0` would let the restore wait forever behind the application.
            return Verdict(SKIP, statement)
        return Verdict(RUN, statement)

    def _large_object_transaction(self, statement: Statement, words: list[str]) -> bool:
        """pg_dump writes large-object data between `BEGIN;` and `COMMIT;` under a BLOBS comment: inside
        chrono-ci's one transaction both are left out (skipping them never ends a transaction)."""
        bare = statement.body().rstrip().rstrip(b";").strip().upper()
        if words == ["BEGIN"] and bare == b"BEGIN" and _BLOBS_HEADER in statement.text:
            self._in_blobs = True
            return True
        if words == ["COMMIT"] and bare == b"COMMIT" and self._in_blobs:
            self._in_blobs = False
            return True
        return False


def _shown(text: bytes, limit: int = 60) -> str:
    """The first line of a statement or command, printable, cut short: enough to find it in the file."""
    stripped = text.strip()
    first = stripped.split(b"\n", 1)[0]
    shown = "".join(char if char.isprintable() else "?" for char in first[:limit].decode("utf-8", errors="replace"))
    more = "..." if len(first) > limit or len(first) < len(stripped) else ""
    return f"`{shown}{more}`"
