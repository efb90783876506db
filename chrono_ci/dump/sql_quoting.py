"""Quoting for the SQL the Supabase profile writes around pg_dump's output: identifiers, literals, dollar
quotes and DO blocks."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def dollar_tag(body: str, base: str = "chrono") -> str:
    """A dollar-quote tag that does not occur in `body`."""
    tag, n = f"${base}$", 0
    while tag in body:
        n += 1
        tag = f"${base}{n}$"
    return tag


def do_block(body: str) -> str:
    tag = dollar_tag(body)
    return f"DO {tag}\n{body}\n{tag};\n"
