"""The dump started as early as it can be: most of a backup's fixed cost comes before pg_dump's first byte.

Learning the server's version (to choose pg_dump) costs psycopg's import and a connection, about as long as
pg_dump's own start (connect, read the catalog, lock the tables). For a profile whose dump reads nothing that must
be checked first, the newest pg_dump found starts right away and the probe runs meanwhile. The probe still
decides: if it fails, or chooses another pg_dump (the server's own major is installed too), the early dump is
killed before a byte of it is read, and only the time it had is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chrono_ci.dump.pg_dump import DumpSource
from chrono_ci.errors import Interrupted
from chrono_ci.profiles.base import Profile
from chrono_ci.source.target import DatabaseTarget, ServerInfo, probe_server
from chrono_ci.source.tools import PgTools, find_pg_tools, pick_pg_tools


@dataclass(frozen=True)
class StartedDump:
    dump: DumpSource
    server: ServerInfo
    tools: PgTools


def start_dump(profile: Profile, target: DatabaseTarget, pg_bin_dir: Path | None) -> StartedDump:
    """Probe the server, choose pg_dump, check access, and start the dump; the early start when it may."""
    profile.check_url(target)
    found = find_pg_tools(pg_bin_dir)
    early = profile.open_dump(found[0], target) if profile.starts_before_probe and found else None
    try:
        server = probe_server(target)
        tools = pick_pg_tools(found, server, pg_bin_dir)
        profile.check_access(target)
        # A signal during the probe may have been swallowed by a library; pg_dump may be waiting on a lock,
        # and reading it would then never end.
        Interrupted.raise_if_requested()
    except BaseException:
        if early is not None:
            early.kill()  # and reaped: every DumpSource's kill waits for its processes
        raise
    if early is not None and tools.bin_dir == found[0].bin_dir:
        return StartedDump(early, server, tools)
    if early is not None:
        early.kill()
    return StartedDump(profile.open_dump(tools, target), server, tools)
