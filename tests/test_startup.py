"""Fixed costs: `chrono-ci --version` answered without Typer, and pg_dump's version cached by binary.

The pg_dump here is a real one behind a wrapper script that counts its runs, so that a test can tell a cache hit
(no run) from a probe. The cache is untrusted: it may only spare that run, never pick a binary or a version that
does not belong to the file on disk.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import chrono_ci
from chrono_ci.source.tools import embedded_bin_dir, find_pg_tools
from chrono_ci.source.version_cache import FILE_NAME, cache_dir

SCRIPT = Path(sys.executable).parent / "chrono-ci"


def real_pg_dump() -> Path:
    for folder in (Path("/usr/lib/postgresql/15/bin"), embedded_bin_dir()):
        if folder is not None and (folder / "pg_dump").is_file():
            return folder / "pg_dump"
    raise AssertionError("no pg_dump: the suite needs PostgreSQL 15 from Debian or the embedded extra")


class CountingPgDump:
    """A folder holding `pg_dump`: a script that records each run in `runs`, then runs the real pg_dump."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.runs = folder.parent / f"{folder.name}-runs"
        self.binary = folder / "pg_dump"
        self.write(f'exec {real_pg_dump()} "$@"')

    def write(self, body: str) -> None:
        self.binary.write_text(f"#!/bin/sh\necho run >> {self.runs}\n{body}\n")
        self.binary.chmod(0o755)

    @property
    def count(self) -> int:
        return len(self.runs.read_text().splitlines()) if self.runs.exists() else 0


@pytest.fixture
def pg_dump(tmp_path: Path) -> CountingPgDump:
    return CountingPgDump(tmp_path / "bin")


@pytest.fixture
def cache_home(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def listed(pg_dump: CountingPgDump, cache_home: Path) -> list[tuple[Path, str]]:
    tools = find_pg_tools(pg_dump.folder, environ={"XDG_CACHE_HOME": str(cache_home), "PATH": ""})
    return [(tool.bin_dir, tool.version) for tool in tools]


def expected_version() -> str:
    out = subprocess.run([str(real_pg_dump()), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?", out)
    assert match, out
    return f"{match.group(1)}.{match.group(2) or 0}"


def test_a_second_lookup_runs_no_pg_dump_and_the_cache_is_private(pg_dump: CountingPgDump, cache_home: Path) -> None:
    first = listed(pg_dump, cache_home)
    assert first == [(pg_dump.folder, expected_version())]
    assert pg_dump.count == 1
    assert listed(pg_dump, cache_home) == first
    assert pg_dump.count == 1, "the second lookup ran pg_dump --version again"
    folder = cache_home / "chrono-ci"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / FILE_NAME).stat().st_mode) == 0o600
    entry = json.loads((folder / FILE_NAME).read_text())["pg_dump"][str(pg_dump.binary)]
    assert entry["version"] == expected_version()
    assert entry["size"] == pg_dump.binary.stat().st_size
    assert entry["mtime_ns"] == pg_dump.binary.stat().st_mtime_ns


def test_a_changed_binary_is_probed_again(pg_dump: CountingPgDump, cache_home: Path) -> None:
    listed(pg_dump, cache_home)
    # An upgrade in place: same path, new file (here a new mtime, and a different answer).
    pg_dump.write('echo "pg_dump (PostgreSQL) 99.4"')
    before = pg_dump.binary.stat()
    os.utime(pg_dump.binary, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert listed(pg_dump, cache_home) == [(pg_dump.folder, "99.4")]
    assert pg_dump.count == 2
    # Only the mtime moves back (a restored backup of the file): the entry no longer matches either.
    os.utime(pg_dump.binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert listed(pg_dump, cache_home) == [(pg_dump.folder, "99.4")]
    assert pg_dump.count == 3


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00", b"[]", b'{"format": 1, "pg_dump": []}', b'{"format": 999, "pg_dump": {}}', b""],
)
def test_a_corrupt_cache_is_ignored_and_rewritten(pg_dump: CountingPgDump, cache_home: Path, content: bytes) -> None:
    folder = cache_home / "chrono-ci"
    folder.mkdir(parents=True)
    (folder / FILE_NAME).write_bytes(content)
    assert listed(pg_dump, cache_home) == [(pg_dump.folder, expected_version())]
    assert pg_dump.count == 1
    document = json.loads((folder / FILE_NAME).read_text())
    assert document["pg_dump"][str(pg_dump.binary)]["version"] == expected_version()
    assert listed(pg_dump, cache_home) == [(pg_dump.folder, expected_version())]
    assert pg_dump.count == 1


def test_a_cache_that_cannot_be_written_is_skipped(pg_dump: CountingPgDump, tmp_path: Path) -> None:
    # A regular file where the cache folder's parent should be: the folder cannot be made, even by root.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    for _ in range(2):
        assert listed(pg_dump, blocked) == [(pg_dump.folder, expected_version())]
    assert pg_dump.count == 2, "without a cache every lookup probes"
    assert blocked.read_text() == ""


def test_without_a_home_there_is_no_cache_and_the_lookup_still_works(pg_dump: CountingPgDump) -> None:
    assert cache_dir({}) is None
    assert cache_dir({"XDG_CACHE_HOME": "relative/path"}) is None  # the XDG spec: relative means unset
    assert cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/chrono-ci")
    assert cache_dir({"HOME": "/home/u", "XDG_CACHE_HOME": "/x"}) == Path("/x/chrono-ci")
    tools = find_pg_tools(pg_dump.folder, environ={"PATH": ""})
    assert [(tool.bin_dir, tool.version) for tool in tools] == [(pg_dump.folder, expected_version())]


def plant(cache_home: Path, entries: dict[str, dict[str, object]]) -> Path:
    folder = cache_home / "chrono-ci"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE_NAME
    path.write_text(json.dumps({"format": 1, "pg_dump": entries}))
    return path


def test_a_planted_entry_chooses_no_binary_and_no_version(pg_dump: CountingPgDump, cache_home: Path) -> None:
    real = pg_dump.binary.stat()
    elsewhere = cache_home / "evil" / "pg_dump"
    plant(
        cache_home,
        {
            # Another binary, with the very key of ours: it is not on the search path, so it is not listed.
            str(elsewhere): {"size": real.st_size, "mtime_ns": real.st_mtime_ns, "version": "99.0"},
            # Ours, with a key that does not match the file: probed, not believed.
            str(pg_dump.binary): {"size": real.st_size + 1, "mtime_ns": real.st_mtime_ns, "version": "99.1"},
        },
    )
    assert listed(pg_dump, cache_home) == [(pg_dump.folder, expected_version())]
    assert pg_dump.count == 1


@pytest.mark.parametrize("version", ["99.1; rm -rf /", "", "99", 99.1, None, "1.2\n3.4"])
def test_a_matching_entry_with_a_malformed_version_is_probed(
    pg_dump: CountingPgDump, cache_home: Path, version: object
) -> None:
    real = pg_dump.binary.stat()
    plant(cache_home, {str(pg_dump.binary): {"size": real.st_size, "mtime_ns": real.st_mtime_ns, "version": version}})
    assert listed(pg_dump, cache_home) == [(pg_dump.folder, expected_version())]
    assert pg_dump.count == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_cache_file_of_another_user_is_not_believed(pg_dump: CountingPgDump, cache_home: Path) -> None:
    real = pg_dump.binary.stat()
    path = plant(
        cache_home, {str(pg_dump.binary): {"size": real.st_size, "mtime_ns": real.st_mtime_ns, "version": "99.2"}}
    )
    os.chown(path, 1, 1)
    assert listed(pg_dump, cache_home) == [(pg_dump.folder, expected_version())]
    assert pg_dump.count == 1


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def version_env(pg_dump: CountingPgDump, cache_home: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PG_BIN_DIR": str(pg_dump.folder)}


SLOW_PATH = "import sys; from chrono_ci.cli.app import main; sys.argv[0] = 'chrono-ci'; main()"


@pytest.mark.parametrize("pg_bin_dir", ["counting", "empty", "unset"])
def test_the_fast_version_prints_what_the_typer_option_prints(
    version_env: dict[str, str], tmp_path: Path, pg_bin_dir: str
) -> None:
    env = dict(version_env)
    if pg_bin_dir == "empty":
        (tmp_path / "empty").mkdir()
        env["PG_BIN_DIR"] = str(tmp_path / "empty")
    elif pg_bin_dir == "unset":
        del env["PG_BIN_DIR"]
    fast = run([str(SCRIPT), "--version"], env)
    slow = run([sys.executable, "-c", SLOW_PATH, "--version"], env)
    module = run([sys.executable, "-m", "chrono_ci", "--version"], env)
    assert (fast.returncode, slow.returncode, module.returncode) == (0, 0, 0), fast.stderr + slow.stderr
    assert fast.stdout == slow.stdout == module.stdout
    assert fast.stdout.startswith(f"chrono-ci {chrono_ci.__version__}\n")
    assert fast.stdout.endswith("\n") and "extras: " in fast.stdout
    assert fast.stderr == slow.stderr == ""


def test_the_fast_version_loads_no_cli_library_and_with_a_warm_cache_runs_no_pg_dump(
    version_env: dict[str, str], pg_dump: CountingPgDump
) -> None:
    probe = (
        "import sys; sys.argv = ['chrono-ci', '--version']\n"
        "from chrono_ci.cli.launch import main\n"
        "main()\n"
        "heavy = ('typer', 'click', 'rich', 'psycopg', 'zstandard', 'boto3', 'chrono_ci.cli.app', 'dataclasses')\n"
        "print('loaded:', *sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    cold = run([sys.executable, "-c", probe], version_env)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.strip() == "loaded:"
    assert f"pg_dump {expected_version()}" in cold.stdout
    assert pg_dump.count == 1
    warm = run([str(SCRIPT), "--version"], version_env)
    assert warm.stdout == cold.stdout
    assert pg_dump.count == 1, "a warm cache still ran pg_dump --version"


def test_version_with_other_options_still_goes_through_typer(version_env: dict[str, str]) -> None:
    fast = run([str(SCRIPT), "--version"], version_env)
    for argv in (["--json", "--version"], ["--version", "--debug"]):
        slow = run([str(SCRIPT), *argv], version_env)
        assert slow.returncode == 0, slow.stderr
        assert slow.stdout == fast.stdout
    wrong = run([str(SCRIPT), "--versions"], version_env)
    assert wrong.returncode == 2
    assert "No such option: --versions" in wrong.stderr


def test_commands_load_when_asked_for_and_a_typo_still_gets_its_suggestion(version_env: dict[str, str]) -> None:
    """chrono_ci/cli/app.py loads a command's module only when that command runs, or for --help and a typo."""
    probe = (
        "import sys; sys.argv = ['chrono-ci', *sys.argv[1:]]\n"
        "from chrono_ci.cli.app import main\n"
        "try:\n    main()\nfinally:\n"
        "    print('loaded:', *sorted(m for m in sys.modules if m.startswith('chrono_ci.cli.')), file=sys.stderr)\n"
    )
    backup_help = run([sys.executable, "-c", probe, "backup", "--help"], version_env)
    assert backup_help.returncode == 0, backup_help.stderr
    loaded = backup_help.stderr.split("loaded:")[1].split()
    assert "chrono_ci.cli.backup" in loaded
    assert not {"chrono_ci.cli.recovery", "chrono_ci.cli.status", "chrono_ci.cli.prune", "chrono_ci.cli.demo"} & set(
        loaded
    )
    listing = run([str(SCRIPT), "--help"], version_env)
    assert listing.returncode == 0
    rows = listing.stdout.split("Commands:")[1].splitlines()
    assert [row.split()[0] for row in rows if row.startswith("  ") and not row.startswith("   ")] == [
        "prune",
        "demo",
        "status",
        "backup",
        "recovery",
    ]
    typo = run([str(SCRIPT), "recovry", "list"], version_env)
    assert typo.returncode == 2
    assert "No such command 'recovry'. Did you mean 'recovery'?" in typo.stderr
