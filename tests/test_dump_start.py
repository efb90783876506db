"""The dump started while the server is probed (chrono_ci/jobs/dump_start.py): the probe still decides which
pg_dump runs, and an early dump it disagrees with, or a probe that fails, leaves no pg_dump behind."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import zstandard

from chrono_ci.config.settings import resolve_settings
from chrono_ci.dump.pg_dump import DumpProcess
from chrono_ci.errors import ChronoError
from chrono_ci.jobs import dump_start
from chrono_ci.jobs.backup import run_backup
from chrono_ci.report.console import Reporter
from chrono_ci.source.target import DatabaseTarget
from tests.fixtures.postgres import TEST_PASSWORD, PgServer

DEBIAN_PG_DUMP_15 = Path("/usr/lib/postgresql/15/bin/pg_dump")


def pg_dump_children() -> list[int]:
    """pg_dump processes whose parent is this test process (none may outlive a backup)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if name == "pg_dump" and parent == os.getpid():
            found.append(int(entry))
    return found


class StartedDumps:
    """Records every pg_dump started, in order, with its major."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.majors: list[int] = []
        self.processes: list[DumpProcess] = []
        real_init = DumpProcess.__init__

        def init(process: DumpProcess, tools: object, target: DatabaseTarget, *args: object) -> None:
            real_init(process, tools, target, *args)  # type: ignore[arg-type]
            self.majors.append(process.tools.major)
            self.processes.append(process)

        monkeypatch.setattr(DumpProcess, "__init__", init)


def test_a_postgres_dump_starts_before_the_probe_and_is_the_one_kept(
    pg18: PgServer, make_database: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_database(pg18, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
    order: list[str] = []
    real_probe = dump_start.probe_server

    def probe(target: DatabaseTarget) -> object:
        order.append(f"probe after {len(started.majors)} pg_dump(s) started")
        return real_probe(target)

    monkeypatch.setattr(dump_start, "probe_server", probe)
    started = StartedDumps(monkeypatch)
    settings = resolve_settings(
        {"backup_dir": str(tmp_path / "b"), "pg_bin_dir": str(pg18.bin_dir)}, {"DATABASE_URL": url}
    )
    result = run_backup(settings, "postgres", Reporter(stream=io.StringIO()))
    assert order == ["probe after 1 pg_dump(s) started"]
    assert started.majors == [18]  # one pg_dump in all: the early one was the right one
    assert result.record.tables == {"public.t": 1000}


def test_the_probe_overrules_an_early_dump_of_another_major(
    pg15: PgServer, make_database: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not DEBIAN_PG_DUMP_15.exists():
        pytest.skip("needs Debian's pg_dump 15 beside the embedded 18")
    url = make_database(pg15, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
    started = StartedDumps(monkeypatch)
    settings = resolve_settings({"backup_dir": str(tmp_path / "b")}, {"DATABASE_URL": url})
    result = run_backup(settings, "postgres", Reporter(stream=io.StringIO()))
    assert started.majors[0] == 18 and started.majors[-1] == 15  # the newest first, then the server's own major
    assert len(started.majors) == 2
    assert started.processes[0].proc.poll() is not None  # the early one was killed and reaped
    assert result.record.pg_dump_version is not None and result.record.pg_dump_version.startswith("15.")
    archive = (tmp_path / "b" / result.record.file).read_bytes()
    sql = zstandard.ZstdDecompressor().decompressobj().decompress(archive)
    assert b"-- Dumped by pg_dump version 15." in sql
    assert pg_dump_children() == []


def test_a_failed_probe_leaves_no_pg_dump_and_no_archive(
    pg18: PgServer, make_database: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_database(pg18).replace(quote(TEST_PASSWORD, safe=""), "wr%40ng-pa55")
    started = StartedDumps(monkeypatch)
    settings = resolve_settings({"backup_dir": str(tmp_path / "b")}, {"DATABASE_URL": url})
    with pytest.raises(ChronoError) as failure:
        run_backup(settings, "postgres", Reporter(stream=io.StringIO()))
    assert failure.value.exit_code == 3 and "Wrong password" in failure.value.message
    assert started.majors == [18]  # it had started early...
    assert started.processes[0].proc.poll() is not None  # ...and was killed and reaped
    assert pg_dump_children() == []
    assert not [p for p in (tmp_path / "b").iterdir() if not p.name.startswith(".")]
