"""A restore whose full integrity proof comes as the archive streams into its transaction, before COMMIT.

With a trusted record that holds the archive's sha256, raw size and row counts, `recovery restore` and
`recovery test --restore` no longer read the archive once before the restore: only the cheap checks run first
(the file's size, the key). Each damage a full read would find is provoked here for real and must still be
found, before COMMIT: the target is exactly as it was, and the exit code and the failing check are the ones the
full read before the restore gave.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from chrono_ci.archive.manifest import Manifest
from tests.fixtures.postgres import CliResult, PgServer
from tests.sample import SAMPLE_SQL
from tests.test_recovery import entries, env_for, state
from tests.test_restore_attacks import plant

Run = Callable[..., CliResult]
VERIFY, UNTRUSTED = 7, 10


@pytest.fixture
def scene(run_cli: Run, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path) -> tuple[str, Path, str]:
    """(database URL, backup folder, archive name): a backup of the sample database, and the database changed
    since, so that a restore that went through would show."""
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    assert run_cli("backup", "postgres", env=env_for(url, folder)).code == 0
    name = str(entries(folder)[-1]["file"])
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders WHERE id > 10")
    return url, folder, name


def edit_record(folder: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    with Manifest(folder).locked() as listed:
        change(next(entry for entry in listed if entry["file"] == name))


def flip_byte(folder: Path, name: str) -> None:
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def truncate_with_its_record(folder: Path, name: str) -> None:
    """Cut the archive short and make its record's size say so: only the stream can tell it is cut."""
    path = folder / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    edit_record(folder, name, lambda entry: entry.update(size_bytes=path.stat().st_size))


def other_sha256(folder: Path, name: str) -> None:
    edit_record(folder, name, lambda entry: entry.update(sha256="0" * 64))


def one_row_more_recorded(folder: Path, name: str) -> None:
    def change(entry: dict[str, Any]) -> None:
        entry["tables"] = {**entry["tables"], "app.orders": entry["tables"]["app.orders"] + 1}

    edit_record(folder, name, change)


DAMAGE: dict[str, tuple[Callable[[Path, str], None], str, str]] = {
    # damage: (how, the check that fails, what the message says)
    "flipped byte": (flip_byte, "decompression", "damaged"),
    "truncated": (truncate_with_its_record, "decompression", "truncated"),
    "record sha256": (other_sha256, "checksum", "differs from the metadata"),
    "record row count": (one_row_more_recorded, "row counts", "app.orders"),
}


def failed_checks(result: CliResult) -> list[str]:
    (tested,) = json.loads(result.stdout)["results"]
    return [check["name"] for check in tested["checks"] if check["ok"] is False]


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_found_as_it_streams_and_nothing_changes(
    run_cli: Run, scene: tuple[str, Path, str], damage: str
) -> None:
    url, folder, name = scene
    how, check, said = DAMAGE[damage]
    how(folder, name)
    before = state(url)
    restored = run_cli("recovery", "restore", name, "--yes", env=env_for(url, folder))
    assert restored.code == VERIFY, restored.output
    assert "checksum, decompression, trailer, dump rules, raw size and row counts: proven as" in restored.stdout
    assert f"FAIL {check}: " in restored.stdout and said in restored.output, restored.output
    assert "failed its integrity test" in restored.output
    assert "rolled back before COMMIT: nothing was changed" in restored.output
    assert state(url) == before
    # It got past the cheap checks: the safety backup was made, and says so.
    (safety,) = [e for e in entries(folder) if e["series"] == "safety"]
    assert str(safety["file"]) in restored.output

    tested = run_cli("--json", "recovery", "test", name, "--restore", env=env_for(url, folder))
    assert tested.code == VERIFY, tested.output
    assert check in failed_checks(tested)
    (result,) = json.loads(tested.stdout)["results"]
    assert result["ok"] is False and result["restore"]["ok"] is False
    assert "nothing was changed" in result["restore"]["error"]


def test_a_dump_rule_broken_late_in_the_file_is_refused_before_it_runs(
    run_cli: Run, scene: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, folder, name = scene
    marker = tmp_path / "owned"
    genuine = zstandard.ZstdDecompressor().decompressobj().decompress((folder / name).read_bytes())
    closing = b"\n--\n-- PostgreSQL database dump complete"
    assert genuine.count(closing) == 1
    # After every table's data, just before the trailer: all of it streams before the refusal.
    hostile = genuine.replace(closing, f"\n\\! touch {marker}\n".encode() + closing)
    planted = plant(folder, hostile)
    before = state(url)
    restored = run_cli("recovery", "restore", planted, "--yes", env=env_for(url, folder))
    assert restored.code == UNTRUSTED, restored.output
    assert "was refused: line " in restored.output and "a psql command" in restored.output
    assert "nothing was changed" in restored.output
    assert state(url) == before
    assert not marker.exists()

    tested = run_cli("--json", "recovery", "test", planted, "--restore", env=env_for(url, folder))
    assert tested.code == UNTRUSTED, tested.output
    assert failed_checks(tested) == ["contents"]
    assert not marker.exists()


def test_a_short_archive_stops_before_the_plan(run_cli: Run, scene: tuple[str, Path, str]) -> None:
    """A size that differs from the record's is an obviously wrong archive: no plan, no safety backup."""
    url, folder, name = scene
    path = folder / name
    path.write_bytes(path.read_bytes()[:-100])
    before = state(url)
    restored = run_cli("recovery", "restore", name, "--yes", env=env_for(url, folder))
    assert restored.code == VERIFY, restored.output
    assert "cut short or replaced" in restored.output, restored.output
    assert "refusing to restore it. Nothing was touched" in restored.output
    assert "==> 2. plan" not in restored.output
    assert not [e for e in entries(folder) if e["series"] == "safety"]
    assert state(url) == before
    tested = run_cli("--json", "recovery", "test", name, "--restore", env=env_for(url, folder))
    assert tested.code == VERIFY, tested.output
    document = json.loads(tested.stdout)
    assert document["ok"] is False and document["error"]["exit_code"] == VERIFY
    assert "cut short or replaced" in document["error"]["message"]


def test_a_passing_restore_reports_every_named_check(run_cli: Run, scene: tuple[str, Path, str]) -> None:
    url, folder, name = scene
    restored = run_cli("recovery", "restore", name, "--yes", env=env_for(url, folder))
    assert restored.code == 0, restored.output
    for check in ("size", "decompression", "checksum", "trailer", "contents", "raw size", "row counts"):
        assert f"ok   {check}: " in restored.stdout, restored.stdout
    tested = run_cli("--json", "recovery", "test", name, "--restore", env=env_for(url, folder))
    assert tested.code == 0, tested.output
    (result,) = json.loads(tested.stdout)["results"]
    named = {check["name"]: check["ok"] for check in result["checks"]}
    assert named == {
        "size": True,
        "decompression": True,
        "checksum": True,
        "trailer": True,
        "contents": True,
        "raw size": True,
        "row counts": True,
    }


def test_the_dry_run_still_reads_the_whole_archive_first(run_cli: Run, scene: tuple[str, Path, str]) -> None:
    url, folder, name = scene
    flip_byte(folder, name)
    dry = run_cli("recovery", "restore", name, "--dry-run", env=env_for(url, folder))
    assert dry.code == VERIFY, dry.output
    assert "FAIL decompression" in dry.stdout and "refusing to restore it. Nothing was touched" in dry.output
    assert "==> 2. plan" not in dry.output
