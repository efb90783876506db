"""The integrity check of a new archive: its decompression proven as it was written, its stored bytes read back
against the sha256 computed in the stream, and what happens when either fails (the archive removed, the manifest
unchanged, older backups untouched, exit 7)."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chrono_ci.config.settings import resolve_settings
from chrono_ci.errors import VerificationFailed
from chrono_ci.jobs import backup as backup_job
from chrono_ci.jobs.backup import run_backup
from chrono_ci.pipeline.roundtrip import RoundTrip
from chrono_ci.pipeline.stream import make_compressor
from chrono_ci.report.console import Reporter
from chrono_ci.storage.local import LocalStorage
from tests.fixtures.postgres import PgServer
from tests.sample import SAMPLE_SQL

SQL = b"".join(b'%d\tsome text of row %d\t{"k": %d}\n' % (i, i, i % 97) for i in range(200_000))


def stored(compression: str, data: bytes = SQL, piece: int = 1 << 20) -> list[bytes]:
    compressor = make_compressor(compression, 1)  # type: ignore[arg-type]
    out = [compressor.compress(data[i : i + piece]) for i in range(0, len(data), piece)]
    return [*out, compressor.flush()]


def trip(compression: str, pieces: list[bytes], expected: int = len(SQL)) -> Any:
    check = RoundTrip(compression)  # type: ignore[arg-type]
    for piece in pieces:
        check.feed(piece)
    return check.finish(expected)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_round_trip_of_a_good_stream(compression: str) -> None:
    result = trip(compression, stored(compression))
    assert result.ok, result.detail
    assert result.raw_bytes == len(SQL)
    assert f"{len(SQL)} bytes of SQL" in result.detail


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_round_trip_catches_a_flipped_bit(compression: str) -> None:
    whole = bytearray(b"".join(stored(compression)))
    whole[len(whole) // 2] ^= 0x10
    result = trip(compression, [bytes(whole)])
    assert not result.ok
    assert "decompressing what was written failed" in result.detail or "came back out" in result.detail


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_round_trip_catches_a_stream_cut_short_or_followed_by_more(compression: str) -> None:
    whole = b"".join(stored(compression))
    cut = trip(compression, [whole[:-7]])
    assert not cut.ok and "does not end" in cut.detail
    longer = trip(compression, [whole, b"more"])
    assert not longer.ok and "after the end" in longer.detail


def test_round_trip_compares_the_size_with_what_pg_dump_wrote() -> None:
    result = trip("zstd", stored("zstd"), expected=len(SQL) + 1)
    assert not result.ok
    assert f"{len(SQL)} bytes came back out, pg_dump wrote {len(SQL) + 1}" in result.detail


def test_an_unexpected_failure_in_the_thread_fails_the_check_and_never_blocks_the_feeder() -> None:
    check = RoundTrip("zstd")

    class Broken:
        def feed(self, data: bytes) -> int:
            raise MemoryError("no room")

        def finish(self) -> str | None:
            return None

    check._inflater = Broken()
    outcome: list[Any] = []

    def feed_all() -> None:
        for piece in stored("zstd") * 5:  # more pieces than the queue holds: a dead thread would block here
            check.feed(piece)
        outcome.append(check.finish(len(SQL)))

    feeder = threading.Thread(target=feed_all, daemon=True)
    feeder.start()
    feeder.join(timeout=30)
    assert not feeder.is_alive(), "the feeder blocked on a round trip whose thread had died"
    assert not outcome[0].ok and "MemoryError: no room" in outcome[0].detail


def test_round_trip_abandoned_mid_stream_stops_its_thread() -> None:
    check = RoundTrip("zstd")
    for piece in stored("zstd")[:3]:
        check.feed(piece)
    check.abandon()
    assert not check._thread.is_alive()


@pytest.fixture
def sample_url(pg18: PgServer, make_database: Callable[..., str]) -> str:
    return make_database(pg18, SAMPLE_SQL)


def _backup(folder: Path, url: str, **settings: str) -> Any:
    resolved = resolve_settings({"backup_dir": str(folder), **settings}, {"DATABASE_URL": url})
    return run_backup(resolved, "postgres", Reporter(stream=io.StringIO()))


def test_a_good_backup_is_checked_without_a_second_decompression(
    sample_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_full_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("a new local archive is not decompressed a second time")

    monkeypatch.setattr(backup_job, "check_archive", no_full_read)
    result = _backup(tmp_path / "b", sample_url)
    checks = {c.name: c for c in result.check.checks}
    assert list(checks) == ["decompression", "checksum", "trailer", "raw size"]
    assert all(c.ok for c in checks.values())
    assert "decompressed as written (frame checksum verified)" in checks["decompression"].detail
    assert "read back from disk, as written" in checks["checksum"].detail


def _faulty_compressor(real: Callable[..., Any]) -> Callable[..., Any]:
    """A compressor whose output is damaged after its checksum was computed (bad memory, a library bug). The
    damage goes into the compressed data, past the gzip header, whose time stamp no reader checks."""

    class Damaging:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.damaged = False

        def compress(self, data: bytes) -> bytes:
            out = self.inner.compress(data)
            return self._damage(out) if len(out) > 64 else out

        def flush(self) -> bytes:
            return self._damage(self.inner.flush())

        def _damage(self, out: bytes) -> bytes:
            if self.damaged:
                return out
            self.damaged = True
            broken = bytearray(out)
            broken[len(broken) // 2] ^= 0x01
            return bytes(broken)

    return lambda *args, **kwargs: Damaging(real(*args, **kwargs))


def _state(folder: Path) -> tuple[list[str], str]:
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    return names, (folder / "backup_metadata.json").read_text()


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_a_compressor_that_damages_its_output_fails_the_backup(
    sample_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    folder = tmp_path / "b"
    _backup(folder, sample_url, compression=compression)
    before = _state(folder)
    monkeypatch.setattr(backup_job, "make_compressor", _faulty_compressor(backup_job.make_compressor))
    with pytest.raises(VerificationFailed) as failure:
        _backup(folder, sample_url, compression=compression)
    assert failure.value.exit_code == 7
    assert "failed its integrity check and was removed: decompression:" in failure.value.message
    assert _state(folder) == before  # the damaged archive removed, the manifest and the older archive as they were


def test_bytes_changed_on_disk_after_writing_fail_the_backup(
    sample_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "b"
    _backup(folder, sample_url)
    before = _state(folder)
    real_put = LocalStorage.put

    def put_then_rot(self: LocalStorage, key: str, *args: Any, **kwargs: Any) -> Any:
        info = real_put(self, key, *args, **kwargs)
        with open(self.path_of(key), "r+b") as handle:  # what a failing disk or filesystem does
            handle.seek(info.size // 2)
            byte = handle.read(1)
            handle.seek(info.size // 2)
            handle.write(bytes([byte[0] ^ 0x20]))
            os.fsync(handle.fileno())
        return info

    monkeypatch.setattr(LocalStorage, "put", put_then_rot)
    with pytest.raises(VerificationFailed) as failure:
        _backup(folder, sample_url)
    assert failure.value.exit_code == 7
    assert "checksum: sha256" in failure.value.message and "read back from disk" in failure.value.message
    assert _state(folder) == before
    assert len(json.loads(before[1])["backups"]) == 1
