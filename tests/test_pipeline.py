"""The streaming stages and settings parsing, on data made here (no server needed)."""

from __future__ import annotations

import io
import random
import zlib

import pytest
import zstandard

from chrono_ci.config.settings import resolve_settings
from chrono_ci.errors import ConfigError, VerificationFailed
from chrono_ci.pipeline.dumprules import SKIP, DumpReader, Verdict
from chrono_ci.pipeline.read import read_archive
from chrono_ci.pipeline.stream import make_compressor
from chrono_ci.source.target import parse_database_url

DUMP = (
    b"--\n-- PostgreSQL database dump\n--\n\\restrict abc123\nSET transaction_timeout = 0;\nSET x = 1;\n"
    b"COPY public.a (id, t) FROM stdin;\n1\tx\n2\t\\\\.\n3\ty\\n\n\\.\n"
    b"COPY public.empty (id) FROM stdin;\n\\.\n\n"
    b'COPY "Sch\xc3\xa9ma"."Ta ""ble" (id) FROM stdin;\n\\.\nSELECT 1;\n'
    b"COPY public.b (id) FROM stdin;\n" + b"".join(b"%d\n" % i for i in range(1000)) + b"\\.\n\n"
    b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n"
)
EXPECTED = {"public.a": 3, "public.empty": 0, 'Schéma.Ta "ble': 0, "public.b": 1000}


def test_copy_row_counter_is_exact_at_every_chunk_boundary() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        counter = DumpReader()
        pos = 0
        while pos < len(DUMP):
            size = rng.choice([1, 2, 3, 4, 5, 7, 64, 4096])
            counter.feed(DUMP[pos : pos + size])
            pos += size
        counter.finish()
        assert counter.tables == EXPECTED
        assert counter.refusal is None


def test_copy_row_counter_sums_repeated_blocks_of_one_table() -> None:
    counter = DumpReader()
    counter.feed(b"COPY public.p (x) FROM stdin;\n1\n2\n\\.\nCOPY public.p (x) FROM stdin;\n3\n\\.\n")
    assert counter.tables == {"public.p": 3}


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_read_archive_round_trip(compression: str) -> None:
    compressor = make_compressor(compression, 1)  # type: ignore[arg-type]
    stored = compressor.compress(DUMP) + compressor.flush()
    contents = read_archive(io.BytesIO(stored), compression)  # type: ignore[arg-type]
    assert contents.raw_bytes == len(DUMP) and contents.trailer_seen and contents.tables == EXPECTED


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_read_archive_detects_truncation_and_bit_flips(compression: str) -> None:
    compressor = make_compressor(compression, 1)  # type: ignore[arg-type]
    stored = compressor.compress(DUMP * 50) + compressor.flush()
    with pytest.raises(VerificationFailed, match="truncated"):
        read_archive(io.BytesIO(stored[: len(stored) // 2]), compression)  # type: ignore[arg-type]
    flipped = bytearray(stored)
    flipped[len(stored) // 2] ^= 0x04
    with pytest.raises(VerificationFailed):
        read_archive(io.BytesIO(bytes(flipped)), compression)  # type: ignore[arg-type]


def test_zstd_archives_carry_a_content_checksum() -> None:
    compressor = make_compressor("zstd", 1)
    stored = compressor.compress(DUMP) + compressor.flush()
    assert zstandard.get_frame_parameters(stored).has_checksum
    assert zlib.crc32(b"") == 0  # gzip archives carry a CRC32 by format


def test_an_old_target_skips_only_the_settings_it_cannot_take() -> None:
    reader = DumpReader(server_major=15, restoring=True)
    verdicts = [v for v in reader.feed(DUMP) + reader.finish() if isinstance(v, Verdict)]
    skipped = [v.event.body() for v in verdicts if v.action == SKIP]
    assert skipped == [b"SET transaction_timeout = 0;"]
    assert reader.refusal is None and reader.tables == EXPECTED


def test_a_modern_target_runs_every_statement() -> None:
    reader = DumpReader(server_major=18, restoring=True)
    verdicts = [v for v in reader.feed(DUMP) + reader.finish() if isinstance(v, Verdict)]
    assert all(v.action != SKIP for v in verdicts)
    assert reader.refusal is None


def test_special_character_passwords_are_decoded_and_kept_out_of_display() -> None:
    target = parse_database_url("postgresql://app%40x:p%40ss%3Aw%2Frd%25%23%3F%26%27%22%C3%A9@db.example:6000/shop")
    assert target.password == "p@ss:w/rd%#?&'\"é"
    assert target.user == "app@x" and target.port == 6000 and target.dbname == "shop"
    assert "p@ss" not in target.display() and "p@ss" not in repr(target)
    assert target.libpq_env({})["PGPASSWORD"] == "p@ss:w/rd%#?&'\"é"


def test_url_parameters_and_ipv6_hosts() -> None:
    target = parse_database_url("postgres://u@[::1]:5433/db?sslmode=require&connect_timeout=5")
    assert target.host == "::1" and target.port == 5433 and target.display() == "u@[::1]:5433/db"
    env = target.libpq_env({"PGSERVICE": "x", "PGHOST": "elsewhere"})
    assert env["PGSSLMODE"] == "require" and env["PGCONNECT_TIMEOUT"] == "5" and env["PGHOST"] == "::1"
    assert "PGSERVICE" not in env
    with pytest.raises(ConfigError, match="not a libpq connection parameter"):
        parse_database_url("postgresql://u@h/db?bogus=1")


def test_settings_defaults_and_sources() -> None:
    settings = resolve_settings({}, {"DATABASE_URL": "postgresql://u:pw@h/db"})
    assert settings.max_backups == 30 and settings.compression == "zstd" and settings.compression_level == 1
    assert str(settings.backup_dir) == "backups" and settings.verify == "check"
    assert settings.secrets() == ["pw"]
    override = resolve_settings({"max_backups": "5"}, {"MAX_BACKUPS": "9"})
    assert override.max_backups == 5 and override.sources["max_backups"] == "--max-backups"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAX_BACKUPS": "1.5"}, "MAX_BACKUPS='1.5'"),
        ({"MAX_BACKUPS": " 3x"}, "MAX_BACKUPS=' 3x'"),
        ({"BACKUP_COMPRESSION_LEVEL": "42"}, "BACKUP_COMPRESSION_LEVEL='42'"),
        ({"COMPRESS_BACKUPS": "false", "BACKUP_COMPRESSION": "gzip"}, "contradicts"),
        ({"BACKUP_VERIFY": "deep"}, "BACKUP_VERIFY='deep'"),
    ],
)
def test_settings_errors_name_the_setting_and_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_settings({}, env)


LARGE_OBJECTS = (
    b"COPY public.t (v) FROM stdin;\nBEGIN;\nCOMMIT;\n\\.\n\n"
    b"--\n-- Data for Name: 16384..16385; Type: BLOBS; Schema: -; Owner: postgres\n--\n\n"
    b"BEGIN;\n\nSELECT pg_catalog.lo_open('16384', 131072);\nSELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n\n"
    b"CREATE PROCEDURE p() LANGUAGE plpgsql AS $$\nBEGIN\n  COMMIT;\nEND $$;\n"
)


def test_only_the_large_object_transaction_is_left_out() -> None:
    rng = random.Random(5)
    for _ in range(300):
        reader = DumpReader(server_major=18, restoring=True)
        items: list[object] = []
        pos = 0
        while pos < len(LARGE_OBJECTS):
            size = rng.choice([1, 2, 3, 7, 40, 4096])
            items += reader.feed(LARGE_OBJECTS[pos : pos + size])
            pos += size
        items += reader.finish()
        assert reader.refusal is None
        verdicts = [v for v in items if isinstance(v, Verdict)]
        # COPY data keeps its rows, whatever they say; the procedure keeps its COMMIT.
        assert reader.tables == {"public.t": 2}
        assert [v.event.body() for v in verdicts if v.action == SKIP] == [b"BEGIN;", b"COMMIT;"]
        assert verdicts[-1].event.body().endswith(b"  COMMIT;\nEND $$;")
