"""The Supabase profile's rewriting of pg_dump's output, line by line, as Supabase's CLI does: the statements a
Supabase project rejects commented out, the roles made idempotent for a non-superuser, and the data part's
header and closing lines neutralised.

Nothing here reads a database: each part's text goes in, the text a Supabase project accepts comes out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chrono_ci.dump.sql_quoting import do_block, quote_ident, quote_literal
from chrono_ci.source.supabase_platform import RESERVED_ROLE, is_managed_schema

PARTS_TRAILER = {
    "roles": "-- PostgreSQL database cluster dump complete",
    "scratch-skeleton": "-- PostgreSQL database dump complete",
    "schema": "-- PostgreSQL database dump complete",
}
NEUTRALISED = "-- [chrono-ci] "
HOLD_BACK = 4096  # the data's last bytes, kept back to neutralise its closing \unrestrict line
HEADER_SCAN = 64 * 1024
_DOLLAR = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")


class _Lexer:
    """Just enough of SQL's lexical rules to know whether a line starts outside any string or function body, so
    that a rewrite never touches the inside of a function that happens to look like a statement."""

    def __init__(self) -> None:
        self.quote: str | None = None
        self.dollar: str | None = None

    @property
    def at_top(self) -> bool:
        return self.quote is None and self.dollar is None

    def feed(self, line: str) -> None:
        i, size = 0, len(line)
        while i < size:
            if self.dollar is not None:
                end = line.find(self.dollar, i)
                if end < 0:
                    return
                i, self.dollar = end + len(self.dollar), None
            elif self.quote is not None:
                end = line.find(self.quote, i)
                if end < 0:
                    return
                if end + 1 < size and line[end + 1] == self.quote:
                    i = end + 2
                else:
                    i, self.quote = end + 1, None
            else:
                char = line[i]
                if char == "-" and line.startswith("--", i):
                    return
                if char in "'\"":
                    self.quote = char
                    i += 1
                    continue
                if char == "$" and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] in "_$")):
                    match = _DOLLAR.match(line, i)
                    if match:
                        self.dollar = match.group(0)
                        i = match.end()
                        continue
                i += 1


_GRANT_ON = re.compile(r'^(?:GRANT|REVOKE) .*? ON (?:[A-Z]+ )*"((?:[^"]|"")+)"')
_STATEMENT_RULES = (
    # Event triggers need a superuser; Supabase installs its own.
    re.compile(r"^CREATE EVENT TRIGGER "),
    re.compile(r"^(?:ALTER|COMMENT ON) EVENT TRIGGER "),
    # The realtime publication exists in every project and belongs to the platform; tables are still added to it.
    re.compile(r'^CREATE PUBLICATION "supabase_realtime'),
    re.compile(r'^ALTER PUBLICATION "supabase_realtime[^"]*" OWNER TO '),
    re.compile(r'^ALTER PUBLICATION "supabase_realtime_'),
    re.compile(r'^COMMENT ON PUBLICATION "supabase_realtime'),
    # Users cannot act as Supabase's admin roles.
    re.compile(r'^ALTER DEFAULT PRIVILEGES FOR ROLE "supabase_[^"]*"'),
    re.compile(r'^ALTER .* OWNER TO "supabase_[^"]*";$'),
    re.compile(r"^ALTER FOREIGN DATA WRAPPER .* OWNER TO "),
    # Only an extension's owner may comment on it.
    re.compile(r"^COMMENT ON EXTENSION "),
    re.compile(r'^CREATE POLICY "cron_job_'),
    re.compile(r'^ALTER TABLE "cron"\.'),
    # pg_dump >= 17 writes it; servers < 17 reject it.
    re.compile(r"^SET transaction_timeout = "),
    # The CVE-2025-8714 guard lines break older psql builds and every non-psql restorer.
    re.compile(r"^\\(?:un)?restrict "),
)
_FIXED_SCHEMA_EXTENSION = re.compile(r'^(CREATE EXTENSION IF NOT EXISTS "(?:pg_tle|pgsodium)") WITH SCHEMA .*;$')


class SchemaRewriter:
    """Line by line, comments out the schema statements a Supabase project rejects, as Supabase's CLI does."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.lexer = _Lexer()
        self.skipping = False
        self.trailer_seen = False

    def line(self, text: str) -> str:
        top = self.lexer.at_top
        self.lexer.feed(text)
        if self.skipping:
            self.skipping = not (self.lexer.at_top and text.rstrip().endswith(";"))
            return NEUTRALISED + text
        if not top:
            return text
        if text == PARTS_TRAILER[self.part]:
            self.trailer_seen = True
            # Only the data's own closing line may end the archive: the pipeline's check relies on it.
            return f"-- chrono-ci: the {self.part} part is complete"
        fixed = _FIXED_SCHEMA_EXTENSION.match(text)
        if fixed:
            return fixed.group(1) + ";"
        grant = _GRANT_ON.match(text)
        if (grant and is_managed_schema(grant.group(1).replace('""', '"'))) or any(
            rule.match(text) for rule in _STATEMENT_RULES
        ):
            self.skipping = not (self.lexer.at_top and text.rstrip().endswith(";"))
            return NEUTRALISED + text
        return text


_CREATE_ROLE = re.compile(r'^CREATE ROLE ("(?:[^"]|"")+");$')
_ALTER_ROLE = re.compile(r'^ALTER ROLE ("(?:[^"]|"")+") (.*)$')
_GRANT_ROLE = re.compile(r'^GRANT ("(?:[^"]|"")+") TO ("(?:[^"]|"")+")(.*?)(?: GRANTED BY "(?:[^"]|"")+")?;$')
_DEFAULT_ATTRIBUTES = re.compile(
    r" (?:NOSUPERUSER|NOCREATEDB|NOCREATEROLE|INHERIT|NOLOGIN|NOREPLICATION|NOBYPASSRLS)(?=[ ;])"
)


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"')


@dataclass
class RolesSection:
    sql: str
    custom_roles: list[str]
    reserved_roles: list[str]
    trailer_seen: bool


def rewrite_roles(text: str) -> RolesSection:
    """pg_dumpall --roles-only output -> idempotent SQL a non-superuser can run: Supabase's reserved roles left
    alone, custom roles created only where missing (with their attributes and settings), memberships granted only
    where missing."""
    custom: dict[str, list[str]] = {}
    reserved: list[str] = []
    grants: list[str] = []
    out: list[str] = []
    trailer = False
    for line in text.splitlines():
        create = _CREATE_ROLE.match(line)
        alter = _ALTER_ROLE.match(line)
        grant = _GRANT_ROLE.match(line)
        if line == PARTS_TRAILER["roles"]:
            trailer = True
            out.append("-- chrono-ci: the roles part is complete")
        elif line.startswith(("\\restrict ", "\\unrestrict ")):
            out.append(NEUTRALISED + line)
        elif create or alter:
            found = create or alter
            assert found is not None
            name = _unquote(found.group(1))
            if RESERVED_ROLE.fullmatch(name):
                if create:
                    reserved.append(name)
                out.append(NEUTRALISED + "reserved by Supabase: " + line)
            elif create:
                custom[name] = []
                out.append(f"-- role {name}: created below if missing")
            else:
                # The role is altered only right after this restore created it, so CREATE ROLE's defaults are
                # in force; restating them needs privileges a non-superuser may lack (NOSUPERUSER, NOCREATEDB).
                statement = _DEFAULT_ATTRIBUTES.sub("", line)
                if not statement.endswith(" WITH;"):
                    custom.setdefault(name, []).append(statement)
        elif grant:
            member = _unquote(grant.group(2))
            if RESERVED_ROLE.fullmatch(member):
                out.append(NEUTRALISED + "reserved by Supabase: " + line)
            else:
                grants.append(f"GRANT {grant.group(1)} TO {grant.group(2)}{grant.group(3)};")
                out.append(f"-- membership {_unquote(grant.group(1))} -> {member}: granted below if missing")
        elif line.startswith("GRANT ") and " ON PARAMETER " in line:
            out.append(NEUTRALISED + "needs a superuser: " + line)
        else:
            out.append(line)
    sql = "\n".join(out) + "\n\n"
    for name, statements in custom.items():
        sql += do_block(_create_role_body(name, statements))
    for statement in grants:
        match = _GRANT_ROLE.match(statement)
        assert match is not None
        role, member = quote_literal(_unquote(match.group(1))), quote_literal(_unquote(match.group(2)))
        sql += do_block(
            "BEGIN\n"
            "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m\n"
            "                 JOIN pg_catalog.pg_roles r ON r.oid = m.roleid\n"
            "                 JOIN pg_catalog.pg_roles u ON u.oid = m.member\n"
            f"                 WHERE r.rolname = {role} AND u.rolname = {member}) THEN\n"
            f"    EXECUTE {quote_literal(statement.rstrip(';'))};\n"
            "  END IF;\n"
            "END"
        )
    return RolesSection(sql, list(custom), reserved, trailer)


def _create_role_body(name: str, statements: list[str]) -> str:
    literal = quote_literal(name)
    lines = [
        "BEGIN",
        f"  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {literal}) THEN",
        "    RETURN;  -- an existing role is the target's: it is left as it is",
        "  END IF;",
        "  IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN",
        f"    RAISE EXCEPTION 'chrono-ci: the backup''s role % does not exist here, and role % may not create it "
        f"(it lacks CREATEROLE)', {literal}, current_user",
        "      USING HINT = 'Create the role first, or restore as a role with CREATEROLE "
        "(Supabase''s postgres has it).';",
        "  END IF;",
        f"  EXECUTE {quote_literal('CREATE ROLE ' + quote_ident(name))};",
        *(f"  EXECUTE {quote_literal(statement.rstrip(';'))};" for statement in statements),
        "END",
    ]
    return "\n".join(lines)


_META_LINE = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+$")


class DataFilter:
    """The data part passes through untouched, except its first lines (pg_dump's SET header and \\restrict) and
    its closing \\unrestrict line, which are neutralised as in the other parts."""

    def __init__(self) -> None:
        self.in_header = True
        self._head = b""
        self._tail = b""
        self._tail_at_line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if not self.in_header:
            return self._pass(chunk)
        data = self._head + chunk
        out: list[bytes] = []
        pos = 0
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                break
            line = data[pos:newline]
            if line.startswith(b"COPY ") or pos > HEADER_SCAN:
                self.in_header = False
                break
            out.append(_neutralise_data_line(line) + b"\n")
            pos = newline + 1
        if self.in_header:
            self._head = data[pos:]
            return b"".join(out)
        self._head = b""
        return b"".join(out) + self._pass(data[pos:])

    def _pass(self, data: bytes) -> bytes:
        buffer = self._tail + data
        if len(buffer) <= HOLD_BACK:
            self._tail = buffer
            return b""
        cut = len(buffer) - HOLD_BACK
        self._tail_at_line_start = buffer[cut - 1] == 0x0A
        self._tail = buffer[cut:]
        return buffer[:cut]

    def finish(self) -> bytes:
        head = b""
        if self.in_header and self._head:
            head = b"\n".join(_neutralise_data_line(line) for line in self._head.split(b"\n"))
        lines = self._tail.split(b"\n")
        for index, line in enumerate(lines):
            if (index > 0 or self._tail_at_line_start) and _META_LINE.match(line):
                lines[index] = NEUTRALISED.encode() + line
        return head + b"\n".join(lines)


def _neutralise_data_line(line: bytes) -> bytes:
    if _META_LINE.match(line) or line.startswith(b"SET transaction_timeout = "):
        return NEUTRALISED.encode() + line
    return line
