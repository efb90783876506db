"""The scratch skeleton of a Supabase archive: the managed schemas the data fills, as statements that build them
only in a chrono-ci scratch database that lacks them (restore-verification on a plain PostgreSQL). In a Supabase
project, or any other database, the skeleton does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from chrono_ci.dump.sql_quoting import do_block, dollar_tag, quote_ident, quote_literal

# verify/scratch.py names its temporary databases so; the skeleton runs only there.
SCRATCH_PREFIX = "chrono_verify_"


def wrap_skeleton(
    text: str,
    schemas: Sequence[str],
    reserved: Sequence[str],
    managed: Sequence[str],
    extensions: Sequence[tuple[str, str]] = (),
) -> str:
    """The managed schemas the data fills, as statements that run only in a chrono-ci scratch database lacking
    them. Each pg_dump entry runs on its own: one that cannot (a trigger calling a user function not yet
    restored) is skipped with a warning, which a scratch restore can afford and a real one never sees.

    The source's extensions are created first where the scratch server has them: Supabase's tables use their
    functions (storage.objects defaults to extensions.uuid_generate_v4()), and the schema part, which enables
    them otherwise, comes after the skeleton. One the server lacks is left to the schema part, whose
    CREATE EXTENSION then names it."""
    scratch_like = quote_literal(SCRATCH_PREFIX.replace("_", "\\_") + "%")
    absent = " AND ".join(f"pg_catalog.to_regnamespace({quote_literal(s)}) IS NULL" for s in schemas)
    creates = "".join(
        f"    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {quote_literal(r)}) THEN\n"
        f"      BEGIN EXECUTE {quote_literal('CREATE ROLE ' + quote_ident(r))};\n"
        "      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'chrono-ci scratch skeleton: %', SQLERRM; END;\n"
        "    END IF;\n"
        for r in reserved
    )
    empties = "".join(
        f"    EXECUTE {quote_literal('CREATE SCHEMA IF NOT EXISTS ' + quote_ident(s))};\n"
        for s in managed
        if s not in schemas
    )
    enable = "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}"
    enabled = "".join(
        f"    IF pg_catalog.to_regnamespace({quote_literal(schema)}) IS NOT NULL THEN\n"
        f"      BEGIN EXECUTE {quote_literal(enable.format(quote_ident(name), quote_ident(schema)))};\n"
        "      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'chrono-ci scratch skeleton: %', SQLERRM; END;\n"
        "    END IF;\n"
        for name, schema in extensions
    )
    out = [
        "-- Restore-verification only: in a chrono-ci scratch database without Supabase's schemas, build the",
        "-- managed tables the data fills. In a Supabase project (or any other database) this does nothing.",
        do_block(
            "BEGIN\n"
            "  IF pg_catalog.current_setting('chrono.restore', true) IS DISTINCT FROM 'on'\n"
            f"     AND pg_catalog.current_database() LIKE {scratch_like}\n"
            f"     AND {absent} THEN\n"
            "    PERFORM pg_catalog.set_config('chrono.skeleton', 'on', false);\n"
            "    PERFORM pg_catalog.set_config('check_function_bodies', 'off', false);\n"
            "    PERFORM pg_catalog.set_config('search_path', '', false);\n"
            f"{creates}{empties}{enabled}"
            # Every project has it, and the schema adds the user's tables to it.
            "    IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'supabase_realtime') THEN\n"
            "      BEGIN CREATE PUBLICATION supabase_realtime;\n"
            "      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'chrono-ci scratch skeleton: %', SQLERRM; END;\n"
            "    END IF;\n"
            "  END IF;\n"
            "END"
        ),
    ]
    for entry in _toc_entries(text):
        tag = dollar_tag(entry, "chrono_ddl")
        out.append(
            do_block(
                "BEGIN\n"
                "  IF pg_catalog.current_setting('chrono.skeleton', true) = 'on' THEN\n"
                f"    EXECUTE {tag}{entry}{tag};\n"
                "  END IF;\n"
                "EXCEPTION WHEN OTHERS THEN\n"
                "  RAISE WARNING 'chrono-ci scratch skeleton: skipped (%)', SQLERRM;\n"
                "END"
            )
        )
    out.append(do_block("BEGIN\n  PERFORM pg_catalog.set_config('chrono.skeleton', 'off', false);\nEND"))
    return "\n".join(out) + "\n"


def _toc_entries(text: str) -> Iterator[str]:
    """pg_dump's entries, split at its `-- Name: ...; Type: ...` comment blocks; the SET header is left out."""
    lines = text.splitlines()
    current: list[str] | None = None
    for index, line in enumerate(lines):
        starts = line == "--" and index + 1 < len(lines) and lines[index + 1].startswith("-- Name: ")
        if starts:
            if current is not None and any(s.strip() and not s.startswith("--") for s in current):
                yield "\n".join(current)
            current = []
        if current is not None:
            current.append(line)
    if current is not None and any(s.strip() and not s.startswith("--") for s in current):
        yield "\n".join(current)
