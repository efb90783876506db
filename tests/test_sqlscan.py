"""The one SQL scanner and the rules a restore applies, on SQL written here (no server needed).

Every case is also fed in random pieces: where a piece ends must never change what the scanner finds.
"""

from __future__ import annotations

import random

import pytest

from chrono_ci.pipeline.dumprules import COPY, RUN, SKIP, DumpReader, Verdict
from chrono_ci.pipeline.sqlscan import (
    Anomaly,
    CopyData,
    CopyEnd,
    Event,
    MetaCommand,
    SqlScanner,
    Statement,
    split_statements,
)


def scan(data: bytes, pieces: list[int] | None = None, seed: int = 0) -> list[tuple[object, ...]]:
    """The events, with COPY data merged, so that two ways of cutting the input compare equal."""
    scanner = SqlScanner()
    events: list[Event] = []
    if pieces is None:
        events += scanner.feed(data)
    else:
        rng = random.Random(seed)
        pos = 0
        while pos < len(data):
            size = rng.choice(pieces)
            events += scanner.feed(data[pos : pos + size])
            pos += size
    events += scanner.finish()
    out: list[tuple[object, ...]] = []
    for event in events:
        if isinstance(event, CopyData):
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + bytes(event.data))  # type: ignore[operator]
            else:
                out.append(("data", bytes(event.data)))
        elif isinstance(event, Statement):
            out.append(("statement", event.body(), event.line_of_body(), event.complete))
        elif isinstance(event, CopyEnd):
            out.append(("end", event.rows, event.line))
        elif isinstance(event, MetaCommand):
            out.append(("meta", event.text, event.line, event.at_statement_start))
        else:
            assert isinstance(event, Anomaly)
            out.append(("anomaly", event.reason, event.line))
    return out


def assert_cut_anywhere(data: bytes) -> list[tuple[object, ...]]:
    whole = scan(data)
    for seed in range(300):
        assert scan(data, [1, 2, 3, 5, 8, 13, 64], seed) == whole, seed
    return whole


def statements(events: list[tuple[object, ...]]) -> list[bytes]:
    return [e[1] for e in events if e[0] == "statement" and e[1]]  # type: ignore[misc]


QUOTING = (
    b"SELECT 'a;b', 'it''s; x';\n"
    b"SELECT E'it\\'s; \\\\', e'\\'';\n"
    b'SELECT 1 AS "we;ird""q";\n'
    b"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
    b"CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN RETURN 1; END $fn$;\n"
    b"SELECT 1 -- ; not an end\n;\n"
    b"SELECT /* ; /* nested ; */ still ; */ 2;\n"
    b"SELECT a$b$c FROM t;\n"
    b"SELECT 'x'::text, nameE'y;z';\n"
    b"SELECT $1;\n"
)


def test_statements_end_only_where_the_server_ends_them() -> None:
    found = statements(assert_cut_anywhere(QUOTING))
    assert found == [
        b"SELECT 'a;b', 'it''s; x';",
        b"SELECT E'it\\'s; \\\\', e'\\'';",
        b'SELECT 1 AS "we;ird""q";',
        b"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;",
        b"CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN RETURN 1; END $fn$;",
        b"SELECT 1 -- ; not an end\n;",
        b"SELECT /* ; /* nested ; */ still ; */ 2;",
        b"SELECT a$b$c FROM t;",
        b"SELECT 'x'::text, nameE'y;z';",
        b"SELECT $1;",
    ]


def test_begin_atomic_bodies_and_rules_keep_their_semicolons() -> None:
    sql = (
        b"CREATE FUNCTION public.f(x integer) RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT\n"
        b'         CASE\n             WHEN (x > 0) THEN 1\n             ELSE 2\n         END AS "case";\n'
        b" SELECT (x + 1);\nEND;\n"
        b"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;\n"
        b"CREATE RULE rr AS\n    ON INSERT TO public.r DO INSTEAD ( INSERT INTO public.r2 (x)\n  VALUES (new.x);\n"
        b" INSERT INTO public.r2 (x)\n  VALUES ((new.x + 1));\n);\n"
        # A function called "begin" is not a BEGIN ATOMIC body: its `;` ends it.
        b"CREATE FUNCTION public.begin() RETURNS int LANGUAGE sql AS 'SELECT 1';\nCOMMIT;\n"
    )
    found = statements(assert_cut_anywhere(sql))
    assert len(found) == 5
    assert found[0].endswith(b"SELECT (x + 1);\nEND;") and found[1].endswith(b"END;")
    assert found[2].startswith(b"CREATE RULE") and found[2].endswith(b"));\n);")
    assert found[4] == b"COMMIT;"


def test_copy_counts_only_where_a_statement_begins() -> None:
    sql = (
        b"COMMENT ON TABLE public.a IS 'hello\nCOPY public.a (id, t) FROM stdin;\n';\n"
        b"-- COPY public.a (id) FROM stdin;\n"
        b"/* COPY public.a (id) FROM stdin; */\n"
        b"COPY public.a (id, t) FROM stdin;\n1\tx\\ny\n2\t\\\\.\n\\.\n"
        b'COPY "Sch\xc3\xa9ma"."Ta ""ble" ("a b")  FROM stdin;\n\n\n\\.\n'
        b"COPY public.z  FROM stdin;\n\\.\n"
    )
    events = assert_cut_anywhere(sql)
    assert [e for e in events if e[0] in ("data", "end")] == [
        ("data", b"1\tx\\ny\n2\t\\\\.\n"),
        ("end", 2, 9),
        ("data", b"\n\n"),
        ("end", 2, 13),
        ("end", 0, 15),
    ]
    reader = DumpReader()
    reader.feed(sql)
    reader.finish()
    assert reader.tables == {"public.a": 2, 'Schéma.Ta "ble': 2, "public.z": 0} and reader.refusal is None


def test_a_gigabyte_line_is_crossed_not_held() -> None:
    """Memory stays bounded: a statement longer than `keep` is reported with its size, not its text."""
    scanner = SqlScanner(keep=1024)
    chunk = b"x" * (1 << 20)
    events: list[Event] = list(scanner.feed(b"SELECT '"))
    for _ in range(64):
        events += scanner.feed(chunk)
    events += scanner.feed(b"';\n") + scanner.finish()
    (statement,) = [e for e in events if isinstance(e, Statement) and e.complete]
    assert statement.truncated and statement.size == 64 * (1 << 20) + 10 and len(statement.text) == 1024
    assert len(scanner._stmt) == 0


def test_meta_commands_are_found_wherever_psql_would_run_them() -> None:
    sql = (
        b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\nSET x = 1;\n"
        b"SELECT 1; \\! id\n"
        b"SELECT '\\! not a command', E'\\\\', $$ \\! $$; -- \\! nor this\n"
        b"\\connect other\n"
        b"COPY public.t (v) FROM stdin;\n\\! data, not a command\n\\.\n"
    )
    events = assert_cut_anywhere(sql)
    metas = [(e[1], e[2], e[3]) for e in events if e[0] == "meta"]
    assert metas == [(b"\\restrict abc123", 5, True), (b"\\! id", 8, True), (b"\\connect other", 10, True)]
    assert ("data", b"\\! data, not a command\n") in events


def test_line_numbers_match_the_file() -> None:
    sql = (
        b"--\n-- c\n\\restrict k\nSET a = 1;\n\n\nCREATE TABLE t (\n x int\n);\n"
        b"COPY t (x) FROM stdin;\n1\n2\n\\.\nSELECT 3;\n"
    )
    events = assert_cut_anywhere(sql)
    lines = {e[1].split(b"\n")[0]: e[2] for e in events if e[0] == "statement" and e[1]}  # type: ignore[union-attr]
    assert lines == {b"SET a = 1;": 4, b"CREATE TABLE t (": 7, b"COPY t (x) FROM stdin;": 10, b"SELECT 3;": 14}
    assert ("end", 2, 13) in events


def test_anomalies_pg_dump_never_writes() -> None:
    events = assert_cut_anywhere(b"COPY public.t (v) FROM stdin; SELECT 1;\n1\n\\.\nCOPY public.u (v) FROM stdin;\n1\n")
    assert [e[1] for e in events if e[0] == "anomaly"] == [
        "text after `FROM stdin;` on the COPY line",
        "the stream ends inside COPY data (no `\\.` line)",
    ]


GENUINE = (
    b"--\n-- PostgreSQL database dump\n--\n\n\\restrict Ab12\n\nSET statement_timeout = 0;\nSET lock_timeout = 0;\n"
    b"SET transaction_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"
    b"CREATE TABLE public.t (v text);\nCOPY public.t (v) FROM stdin;\nBEGIN;\nCOMMIT;\n\\.\n\n"
    b"--\n-- Data for Name: 16390; Type: BLOBS; Schema: -; Owner: postgres\n--\n\n"
    b"BEGIN;\n\nSELECT pg_catalog.lo_open('16390', 131072);\nSELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n\n"
    b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict Ab12\n\n"
)


def judge(sql: bytes, profile: str = "postgres", server_major: int | None = 18) -> DumpReader:
    reader = DumpReader(profile, server_major=server_major, restoring=server_major is not None)
    rng = random.Random(len(sql))
    pos = 0
    verdicts: list[object] = []
    while pos < len(sql):
        size = rng.choice([1, 3, 7, 100, 4096])
        verdicts += reader.feed(sql[pos : pos + size])
        pos += size
    verdicts += reader.finish()
    reader.verdicts = [v for v in verdicts if isinstance(v, Verdict)]  # type: ignore[attr-defined]
    return reader


def test_a_genuine_dump_is_accepted() -> None:
    reader = judge(GENUINE, server_major=15)
    assert reader.refusal is None and reader.tables == {"public.t": 2}
    actions = [(v.action, v.event.body().split(b" ")[0]) for v in reader.verdicts]  # type: ignore[attr-defined]
    assert actions == [
        (RUN, b"SET"),
        (SKIP, b"SET"),  # lock_timeout: the restore keeps its own
        (SKIP, b"SET"),  # transaction_timeout: PostgreSQL 15 does not know it
        (RUN, b"SELECT"),
        (RUN, b"CREATE"),
        (COPY, b"COPY"),
        (SKIP, b"BEGIN;"),
        (RUN, b"SELECT"),
        (RUN, b"SELECT"),
        (SKIP, b"COMMIT;"),
    ]


# (attack, what the refusal says); the refusal names the attack's first line, or the line after pg_dump's own
# \unrestrict line, which is skipped.
ATTACKS = [
    (b"\\! touch /tmp/owned\n", "a psql command (`\\! touch /tmp/owned`)"),
    (b"\\o /tmp/owned\n", "a psql command (`\\o /tmp/owned`)"),
    (b"\\copy (select 1) to program 'id'\n", "a psql command"),
    (b"\\connect other\n", "a psql command (`\\connect other`)"),
    (b"SELECT 1; \\gexec\n", "a psql command (`\\gexec`)"),
    (b"SELECT 1 \\; COMMIT;\n", "a psql command"),
    (b"\\unrestrict Ab12\n\\! id\n", "a psql command (`\\! id`)"),
    (b"COMMIT;\nDROP DATABASE victim;\n", "transaction control (`COMMIT;`)"),
    (b"/* hidden */ commit ;\n", "transaction control (`commit ;`)"),
    (b"END;\n", "transaction control"),
    (b"ROLLBACK;\n", "transaction control"),
    (b"ABORT;\n", "transaction control"),
    (b"BEGIN;\n", "transaction control"),
    (b"START TRANSACTION;\n", "transaction control"),
    (b"SAVEPOINT s;\n", "transaction control"),
    (b"RELEASE s;\n", "transaction control"),
    (b"PREPARE TRANSACTION 'x';\n", "transaction control"),
    (b"CREATE DATABASE evil;\n", "`CREATE DATABASE evil;`"),
    (b"DROP DATABASE victim;\n", "`DROP DATABASE victim;`"),
    (b"ALTER DATABASE victim OWNER TO x;\n", "`ALTER DATABASE"),
    (b"ALTER SYSTEM SET fsync = off;\n", "`ALTER SYSTEM"),
    (b"COPY public.t (v) FROM PROGRAM 'id';\n", "a COPY other than"),
    (b"COPY public.t TO '/tmp/x';\n", "a COPY other than"),
    (b"COPY public.t (v) FROM '/etc/passwd';\n", "a COPY other than"),
    (b"LOAD 'evil';\n", "`LOAD 'evil';`"),
    (b"DO $$ BEGIN PERFORM 1; END $$;\n", "`DO $$ BEGIN"),
    (b"CALL p();\n", "`CALL p();`"),
    (b"CREATE ROLE evil SUPERUSER;\n", "`CREATE ROLE"),
    (b"ALTER USER postgres PASSWORD 'x';\n", "`ALTER USER"),
    (b"SELECT 1", "a statement without its closing `;`"),
]


@pytest.mark.parametrize(("attack", "what"), ATTACKS)
def test_what_pg_dump_never_writes_is_refused_with_its_line(attack: bytes, what: str) -> None:
    head, tail = GENUINE.split(b"CREATE TABLE", 1)
    sql = head + attack + b"CREATE TABLE" + tail if not attack.endswith(b"1") else GENUINE + attack
    reader = judge(sql)
    assert reader.refusal is not None, attack
    assert what in reader.refusal.message()
    offending = 1 if attack.startswith(b"\\unrestrict") else 0
    start = head.count(b"\n") + 1 if not attack.endswith(b"1") else GENUINE.count(b"\n") + 1
    assert reader.refusal.line == start + offending
    # Nothing after the refusal is handed on to be run.
    assert all(v.event.line_of_body() <= reader.refusal.line for v in reader.verdicts)  # type: ignore[attr-defined]


def test_the_supabase_profile_accepts_its_own_blocks_only() -> None:
    own = b"DO $$ BEGIN PERFORM 1; END $$;\nGRANT anon TO authenticator;\nALTER ROLE app SET search_path = '';\n"
    assert judge(GENUINE + own, profile="supabase").refusal is None
    assert judge(GENUINE + own, profile="postgres").refusal is not None
    assert judge(GENUINE + b"COMMIT;\n", profile="supabase").refusal is not None


def test_a_long_statement_is_refused_by_its_size() -> None:
    reader = DumpReader(keep=1024)
    reader.feed(b"SET a = 1;\nSELECT '" + b"x" * ((64 << 20) + 10) + b"';\n")
    reader.finish()
    assert reader.refusal is not None and "64 MiB outside COPY data" in reader.refusal.message()
    assert reader.refusal.line == 2


def test_chrono_ci_splits_its_own_preamble_the_same_way() -> None:
    assert split_statements("SET a = 1;\nDO $x$ BEGIN PERFORM 1; END $x$;\n-- done\n") == [
        "SET a = 1;",
        "\nDO $x$ BEGIN PERFORM 1; END $x$;",
    ]
