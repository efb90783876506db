"""One SQL scanner for plain-format dumps: where statements begin and end, and where COPY data lies.

It splits the stream as psql and the server do (quotes, E'' strings, dollar quoting, nested comments,
parentheses and `BEGIN ATOMIC` bodies), so a `COPY x FROM stdin;` counts only where a statement can begin, never
inside a comment or a string. The backup's row counter, the integrity check and the restore all read a dump
through it.

Speed matters: nearly all of a dump's bytes are COPY data, which is crossed with byte searches (`find`,
`count`), never looked at one character at a time in Python; statements are crossed with one regular expression
that jumps from one character that matters to the next.

Why one long module: the scanner is one state machine over SQL's lexical states (normal text, quoted strings,
E'' strings, dollar quotes, nested comments, COPY data, psql meta-commands), each handing over to the next in the
middle of a buffer, and the events it emits are its own vocabulary; split apart, no part could be read or checked
without the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What can change the lexer's state outside quotes and comments. Words matter only at a statement's start (is it
# CREATE [OR REPLACE] FUNCTION|PROCEDURE?) and inside such statements (BEGIN ATOMIC ... END).
_NORMAL = re.compile(rb"[;'\"$()\\]|--|/\*|[-/]\Z")
_NORMAL_WORDS = re.compile(rb"[;'\"$()\\]|--|/\*|[-/]\Z|[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*")
_DOLLAR_TAG = re.compile(rb"\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")
_DOLLAR_PREFIX = re.compile(rb"\$[A-Za-z0-9_\x80-\xff]*\Z")
_ESCAPE_STRING_END = re.compile(rb"[\\']")
_COMMENT_MARK = re.compile(rb"/\*|\*/")
_IDENT_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$") | frozenset(
    range(0x80, 0x100)
)
_LONGEST_TOKEN = 1024  # a longer word or "$tag" cut by a piece boundary is not held back for the next piece
_WORDS_TRACKED = 4  # CREATE OR REPLACE FUNCTION
_ATOMIC = re.compile(rb"atomic", re.IGNORECASE)
COPY_END = b"\n\\.\n"

# The form pg_dump writes for table data: `COPY schema.table (col, ...) FROM stdin;` (identifiers maybe quoted).
_IDENT = rb'(?:"(?:[^"]|"")+"|[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)'
COPY_FROM_STDIN = re.compile(
    rb"COPY\s+(?P<table>" + _IDENT + rb"(?:\." + _IDENT + rb")?)\s*"
    rb"(?:\(\s*" + _IDENT + rb"(?:\s*,\s*" + _IDENT + rb")*\s*\)\s*)?"
    rb"FROM\s+stdin\s*;\s*\Z",
    re.IGNORECASE,
)
_LEADING = re.compile(rb"(?:\s+|--[^\n]*(?:\n|\Z))*")
_WORD = re.compile(rb"[A-Za-z_]+")

NORMAL, SQUOTE, EQUOTE, DQUOTE, DOLLAR, LINE_COMMENT, BLOCK_COMMENT, COPY_DATA = range(8)
# What a scanning step tells the loop.
_GO_ON, _MORE, _END, _META = range(4)


@dataclass(frozen=True)
class Statement:
    """A complete top-level statement (with its leading comments and its `;`), or the text after the last one."""

    text: bytes  # only the first `keep` bytes when `truncated`
    line: int  # the line where its text starts (leading comments included)
    size: int  # its whole length in bytes
    complete: bool = True  # False for what follows the last `;` (comments, the trailer)

    @property
    def truncated(self) -> bool:
        return self.size > len(self.text)

    def body(self) -> bytes:
        """The text without its leading blank space and comments."""
        return self.text[leading_length(self.text) :]

    def line_of_body(self) -> int:
        """The line where the statement's first word stands."""
        return self.line + self.text.count(b"\n", 0, leading_length(self.text))

    def keywords(self, count: int = 3) -> list[str]:
        """The first words, upper-cased: what the server decides the statement is by."""
        words: list[str] = []
        text = self.text
        pos = 0
        while len(words) < count:
            pos = leading_length(text, pos)
            match = _WORD.match(text, pos)
            if match is None:
                break
            words.append(match.group().decode("ascii").upper())
            pos = match.end()
        return words

    def is_empty(self) -> bool:
        return not self.body().strip().rstrip(b";").strip()


@dataclass(frozen=True)
class CopyData:
    data: memoryview  # rows of the current COPY block, as pg_dump wrote them (never the `\\.` line)


@dataclass(frozen=True)
class CopyEnd:
    rows: int
    line: int  # the line of the `\\.` terminator


@dataclass(frozen=True)
class MetaCommand:
    """A backslash outside quotes, comments and COPY data: psql would run the rest of the line as a command."""

    text: bytes  # from the backslash to the end of its line (at most 4 KiB)
    line: int
    at_statement_start: bool  # nothing but blank space and comments since the last statement


@dataclass(frozen=True)
class Anomaly:
    """Something pg_dump never writes and psql would read in its own way: text after `FROM stdin;` on the COPY
    line, or a COPY block the stream ends inside."""

    reason: str
    line: int


Event = Statement | CopyData | CopyEnd | MetaCommand | Anomaly


def leading_length(text: bytes, pos: int = 0) -> int:
    """How far blank space and comments (`--` and nested `/* */`) reach from `pos`."""
    while True:
        match = _LEADING.match(text, pos)
        assert match is not None
        pos = match.end()
        if not text.startswith(b"/*", pos):
            return pos
        depth, at = 1, pos + 2
        while depth:
            mark = _COMMENT_MARK.search(text, at)
            if mark is None:
                return len(text)
            depth += 1 if mark.group() == b"/*" else -1
            at = mark.end()
        pos = at


def copy_table(statement: bytes) -> str | None:
    """'COPY public."T" (id) FROM stdin;' -> 'public.T'; None unless it is exactly pg_dump's form."""
    match = COPY_FROM_STDIN.match(statement, leading_length(statement))
    if match is None:
        return None
    return ".".join(_unquote(part) for part in _split_qualified(match["table"]))


def _split_qualified(name: bytes) -> list[bytes]:
    parts: list[bytes] = []
    current = bytearray()
    quoted = False
    for byte in name:
        if byte == 0x22:
            quoted = not quoted
        if byte == 0x2E and not quoted:
            parts.append(bytes(current))
            current.clear()
        else:
            current.append(byte)
    parts.append(bytes(current))
    return parts


def _unquote(part: bytes) -> str:
    text = part.decode("utf-8", errors="replace")
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


class SqlScanner:
    """Turns the bytes of a plain-format dump, fed in pieces of any size, into events: Statement, CopyData,
    CopyEnd, MetaCommand and Anomaly, in stream order.

    `keep` bounds how many bytes of each statement are kept: the restore executes statements whole (and refuses
    a truncated one), the row counter only needs their first bytes. Memory stays bounded whatever the input: a
    gigabyte-long line is crossed, not held.
    """

    def __init__(self, keep: int = 1 << 20, *, track_words: bool = False) -> None:
        self.keep = keep
        # Words are followed only to re-read a routine's text (see _inside_atomic_body): the fast path skips them.
        self._track_words = track_words
        self.line = 1  # the line of the next byte to scan
        self._state = NORMAL
        self._pending = b""  # bytes held back because a token may continue in the next piece
        self._hist = b"\n\n"  # the last two bytes scanned: a piece may begin right after `E` or inside a word
        # the current statement
        self._stmt = bytearray()
        self._stmt_size = 0
        self._stmt_line = 1
        self._paren = 0
        self._atomic = 0  # depth inside BEGIN ATOMIC ... END (with CASE ... END inside it)
        self._after_begin = False
        self._words: list[bytes] = []
        self._routine = False
        # inside a quote or comment
        self._tag = b""
        self._comment_depth = 0
        # inside COPY data
        self._copy_rows = 0
        self._copy_line_start = True
        self._copy_skip_line = False
        self._copy_line_junk = False

    @property
    def in_copy(self) -> bool:
        return self._state == COPY_DATA

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        buf = data if isinstance(data, bytes) else bytes(data)
        if self._pending:
            buf = self._pending + buf
            self._pending = b""
        self._scan(buf, events, final=False)
        return events

    def finish(self) -> list[Event]:
        """The events the end of the stream completes."""
        events: list[Event] = []
        if self._pending:
            buf, self._pending = self._pending, b""
            self._scan(buf, events, final=True)
        if self._state == COPY_DATA:
            events.append(Anomaly("the stream ends inside COPY data (no `\\.` line)", self.line))
        elif self._stmt_size:
            events.append(self._statement(complete=False))
        return events

    # -- the loop ----------------------------------------------------------------------------------------------

    def _scan(self, buf: bytes, events: list[Event], final: bool) -> None:
        size = len(buf)
        pos = 0
        while pos < size:
            state = self._state
            if state == COPY_DATA:
                pos, step = self._scan_copy(buf, pos, events, final)
                if step == _MORE:
                    self._pending = bytes(buf[pos:])
                    return
                continue
            if state == NORMAL:
                end, step = self._scan_normal(buf, pos, final)
            elif state == SQUOTE:
                end, step = self._scan_quoted(buf, pos, final, b"'")
            elif state == DQUOTE:
                end, step = self._scan_quoted(buf, pos, final, b'"')
            elif state == EQUOTE:
                end, step = self._scan_escape_string(buf, pos, final)
            elif state == DOLLAR:
                end, step = self._scan_dollar(buf, pos, final)
            elif state == LINE_COMMENT:
                newline = buf.find(b"\n", pos)
                end, step = (size, _GO_ON) if newline == -1 else (newline + 1, _GO_ON)
                if newline != -1:
                    self._state = NORMAL
            else:
                end, step = self._scan_block_comment(buf, pos, final)
            self._take(buf, pos, end)
            pos = end
            if step == _MORE:
                self._pending = bytes(buf[pos:])
                return
            if step == _END:
                pos = self._end_statement(buf, pos, events)
            elif step == _META:
                pos, step = self._meta(buf, pos, events, final)
                if step == _MORE:  # the command's line ends in the next piece
                    self._pending = bytes(buf[pos:])
                    return

    def _take(self, buf: bytes, start: int, end: int) -> None:
        """Statement bytes [start, end) were scanned: keep them (up to `keep`) and count their lines."""
        if end <= start:
            return
        self.line += buf.count(b"\n", start, end)
        self._hist = (self._hist + bytes(buf[max(start, end - 2) : end]))[-2:]
        room = self.keep - len(self._stmt)
        if room > 0:
            self._stmt += buf[start : min(end, start + room)]
        self._stmt_size += end - start

    def _before(self, buf: bytes, at: int, back: int) -> int:
        """The byte `back` places before `at`, looking into what was scanned before this piece."""
        index = at - back
        return buf[index] if index >= 0 else self._hist[index]

    # -- outside quotes ----------------------------------------------------------------------------------------

    def _scan_normal(self, buf: bytes, pos: int, final: bool) -> tuple[int, int]:
        """Up to the statement's end, a backslash, or the end of the piece. Quotes and comments that close in
        this piece are crossed here; one that goes on into the next piece is left to its own state."""
        size = len(buf)
        start = pos
        while True:
            words = self._track_words and (self._routine or len(self._words) < _WORDS_TRACKED)
            match = (_NORMAL_WORDS if words else _NORMAL).search(buf, pos)
            if match is None:
                return size, _GO_ON
            at = match.start()
            token = match.group()
            first = token[0]
            if first == 0x3B:  # ;
                self._after_begin = False
                if self._paren == 0 and self._atomic == 0 and not self._inside_atomic_body(buf, start, at):
                    return at + 1, _END
                pos = at + 1
                continue
            if first == 0x27:  # '
                prev = self._before(buf, at, 1)
                escape = prev in b"eE" and self._before(buf, at, 2) not in _IDENT_BYTES
                self._state = EQUOTE if escape else SQUOTE
                end, step = (
                    self._scan_escape_string(buf, at + 1, final)
                    if escape
                    else self._scan_quoted(buf, at + 1, final, b"'")
                )
            elif first == 0x22:  # "
                self._after_begin = False
                self._state = DQUOTE
                end, step = self._scan_quoted(buf, at + 1, final, b'"')
            elif first == 0x24:  # $
                if self._before(buf, at, 1) in _IDENT_BYTES:  # inside a word such as a$b, or after digits
                    pos = at + 1
                    continue
                tag = _DOLLAR_TAG.match(buf, at)
                if tag is None:
                    if not final and size - at <= _LONGEST_TOKEN and _DOLLAR_PREFIX.match(buf, at):
                        return at, _MORE  # the tag may end in the next piece
                    pos = at + 1
                    continue
                self._tag = tag.group()
                self._state = DOLLAR
                end, step = self._scan_dollar(buf, tag.end(), final)
            elif first == 0x28:  # (
                self._paren += 1
                self._after_begin = False
                pos = at + 1
                continue
            elif first == 0x29:  # )
                self._paren = max(0, self._paren - 1)
                pos = at + 1
                continue
            elif first == 0x5C:  # a backslash: psql would take the rest of the line as a command
                return at, _META
            elif token == b"--":
                newline = buf.find(b"\n", at + 2)
                if newline == -1:
                    self._state = LINE_COMMENT
                    return size, _GO_ON
                pos = newline + 1
                continue
            elif token == b"/*":
                self._state = BLOCK_COMMENT
                self._comment_depth = 1
                end, step = self._scan_block_comment(buf, at + 2, final)
            elif first in b"-/":  # the piece's last byte: a comment may begin with the next piece's first
                return (size, _GO_ON) if final else (at, _MORE)
            else:
                end = match.end()
                if end == size and not final and end - at <= _LONGEST_TOKEN:
                    return at, _MORE  # the word may go on in the next piece
                if self._before(buf, at, 1) not in _IDENT_BYTES:  # not the digits-then-letters of 1e5 or x1
                    self._word(token.lower())
                pos = end
                continue
            if self._state != NORMAL or step != _GO_ON:
                return end, step
            pos = end

    def _inside_atomic_body(self, buf: bytes, start: int, at: int) -> bool:
        """Whether this `;` stands inside a `BEGIN ATOMIC ... END` body, where it does not end the statement.

        Only a statement holding the word ATOMIC can have such a body; it is then re-read word by word (as
        psql does for CREATE FUNCTION and CREATE PROCEDURE), which costs nothing for every other statement.
        """
        if self._track_words:
            return False
        text = buf[start:at] if not self._stmt else bytes(self._stmt) + buf[start:at]
        if _ATOMIC.search(text) is None:
            return False
        inner = SqlScanner(keep=0, track_words=True)
        inner._scan(text, [], final=True)  # final: the last word (END) must not wait for a next piece
        return inner._atomic > 0

    def _word(self, word: bytes) -> None:
        if len(self._words) < _WORDS_TRACKED:
            self._words.append(word)
            self._routine = _is_routine(self._words)
        if not self._routine or self._paren:
            return
        if self._after_begin:
            self._after_begin = False
            if word == b"atomic":
                self._atomic += 1
                return
        if word == b"begin" and self._atomic == 0:
            self._after_begin = True
        elif word == b"case" and self._atomic:
            self._atomic += 1
        elif word == b"end" and self._atomic:
            self._atomic -= 1

    def _end_statement(self, buf: bytes, pos: int, events: list[Event]) -> int:
        statement = self._statement(complete=True)
        events.append(statement)
        if statement.truncated or copy_table(statement.text) is None:
            return pos
        # COPY data begins on the next line, as psql reads it; pg_dump ends the COPY line right after `;`.
        self._state = COPY_DATA
        self._copy_rows = 0
        self._copy_line_start = True
        self._copy_skip_line = True
        return pos

    def _statement(self, complete: bool) -> Statement:
        statement = Statement(bytes(self._stmt), self._stmt_line, self._stmt_size, complete)
        self._stmt = bytearray()
        self._stmt_size = 0
        self._stmt_line = self.line
        self._paren = self._atomic = 0
        self._after_begin = self._routine = False
        self._words = []
        return statement

    def _meta(self, buf: bytes, at: int, events: list[Event], final: bool) -> tuple[int, int]:
        """A backslash command, up to its line's end: reported, and left out of the statement's text."""
        newline = buf.find(b"\n", at)
        if newline == -1 and not final and len(buf) - at <= 4096:
            return at, _MORE
        end = len(buf) if newline == -1 else newline
        kept = bytes(self._stmt)
        at_start = self._stmt_size == len(kept) and leading_length(kept) == len(kept)
        events.append(MetaCommand(bytes(buf[at : min(end, at + 4096)]), self.line, at_start))
        if newline == -1:
            return end, _GO_ON
        # The line stays in the statement's text as an empty line, so that line numbers still match the dump.
        self._take(b"\n", 0, 1)
        return newline + 1, _GO_ON

    # -- inside quotes and comments ----------------------------------------------------------------------------

    def _scan_quoted(self, buf: bytes, pos: int, final: bool, mark: bytes) -> tuple[int, int]:
        size = len(buf)
        while True:
            at = buf.find(mark, pos)
            if at == -1:
                return size, _GO_ON
            if at + 1 == size and not final:
                return at, _MORE  # a doubled quote may follow in the next piece
            if at + 1 < size and buf[at + 1] == mark[0]:
                pos = at + 2
                continue
            self._state = NORMAL
            return at + 1, _GO_ON

    def _scan_escape_string(self, buf: bytes, pos: int, final: bool) -> tuple[int, int]:
        size = len(buf)
        while True:
            match = _ESCAPE_STRING_END.search(buf, pos)
            if match is None:
                return size, _GO_ON
            at = match.start()
            if at + 1 == size and not final:
                return at, _MORE
            if buf[at] == 0x5C or (at + 1 < size and buf[at + 1] == 0x27):  # \x or ''
                pos = at + 2
                continue
            self._state = NORMAL
            return at + 1, _GO_ON

    def _scan_dollar(self, buf: bytes, pos: int, final: bool) -> tuple[int, int]:
        at = buf.find(self._tag, pos)
        if at != -1:
            self._state = NORMAL
            return at + len(self._tag), _GO_ON
        if final:
            return len(buf), _GO_ON
        return max(pos, len(buf) - len(self._tag) + 1), _MORE  # the closing tag may straddle

    def _scan_block_comment(self, buf: bytes, pos: int, final: bool) -> tuple[int, int]:
        size = len(buf)
        while True:
            mark = _COMMENT_MARK.search(buf, pos)
            if mark is None:
                if not final and size > pos and buf[size - 1] in b"/*":
                    return size - 1, _MORE
                return size, _GO_ON
            self._comment_depth += 1 if mark.group() == b"/*" else -1
            pos = mark.end()
            if self._comment_depth == 0:
                self._state = NORMAL
                return pos, _GO_ON

    # -- COPY data ---------------------------------------------------------------------------------------------

    def _scan_copy(self, buf: bytes, pos: int, events: list[Event], final: bool) -> tuple[int, int]:
        """Rows up to the `\\.` line, with byte searches only. Rows are lines: pg_dump escapes newlines in values."""
        size = len(buf)
        if self._copy_skip_line:
            newline = buf.find(b"\n", pos)
            end = size if newline == -1 else newline
            self._copy_line_junk = self._copy_line_junk or bool(buf[pos:end].strip())
            if newline == -1:
                return size, _GO_ON
            if self._copy_line_junk:
                events.append(Anomaly("text after `FROM stdin;` on the COPY line", self.line))
            self._copy_skip_line = self._copy_line_junk = False
            self.line += 1
            pos = newline + 1
        if self._copy_line_start and buf[pos : pos + 3] == b"\\.\n":
            return self._end_copy(pos + 3, events), _GO_ON
        found = buf.find(COPY_END, pos)
        if found != -1:
            self._copy_data(buf, pos, found + 1, events)
            return self._end_copy(found + 4, events), _GO_ON
        # No terminator here; one may begin in the last bytes: hold back what could be its start.
        hold = 0
        if not final:
            for candidate in (b"\n\\.", b"\n\\"):
                if buf[max(pos, size - len(candidate)) : size] == candidate:
                    hold = len(candidate) - 1
                    break
            else:
                tail = bytes(buf[pos:size])
                if self._copy_line_start and tail in (b"\\", b"\\."):
                    hold = len(tail)
        self._copy_data(buf, pos, size - hold, events)
        return size - hold, (_MORE if hold else _GO_ON)

    def _copy_data(self, buf: bytes, start: int, end: int, events: list[Event]) -> None:
        if end <= start:
            return
        rows = buf.count(b"\n", start, end)
        self._copy_rows += rows
        self.line += rows
        self._copy_line_start = buf[end - 1] == 0x0A
        events.append(CopyData(memoryview(buf)[start:end]))

    def _end_copy(self, end: int, events: list[Event]) -> int:
        """`end` is just past the `\\.` line."""
        events.append(CopyEnd(self._copy_rows, self.line))
        self.line += 1
        self._state = NORMAL
        self._stmt_line = self.line
        self._hist = b".\n"
        return end


def _is_routine(words: list[bytes]) -> bool:
    """CREATE [OR REPLACE] FUNCTION|PROCEDURE: where a BEGIN ATOMIC body may hold semicolons."""
    if len(words) < 2 or words[0] != b"create":
        return False
    if words[1] in (b"function", b"procedure"):
        return True
    return len(words) >= 4 and words[1:3] == [b"or", b"replace"] and words[3] in (b"function", b"procedure")


def split_statements(sql: str) -> list[str]:
    """chrono-ci's own multi-statement SQL, as the statements the server runs one at a time."""
    scanner = SqlScanner(keep=len(sql.encode()) + 1)
    events = scanner.feed(sql.encode()) + scanner.finish()
    return [event.text.decode() for event in events if isinstance(event, Statement) and not event.is_empty()]
