"""The throwaway PostgreSQL (demo, restore-verification) runs as a user id that has no name.

`docker run --user 1000:1000 IMAGE demo` runs chrono-ci as an id /etc/passwd does not know, and initdb stopped
there: "could not look up effective user ID 1000". Here the same happens on this machine, for real: chrono-ci
runs as an unnamed id in a user namespace (`unshare --user --map-user=ID`: the id is what getuid() returns and
what initdb looks up, while files stay readable as they are to us). With nss_wrapper installed the demo's
restore-proven backup succeeds; without it, the error says what to do. The image, which has nss_wrapper, is run
with --user in tests/test_container.py.
"""

from __future__ import annotations

import ctypes.util
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

UNSHARE = shutil.which("unshare")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or UNSHARE is None, reason="a user namespace with another id needs root and unshare"
)


def unnamed_id() -> int:
    uid = 4242
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def test_demo_as_a_user_id_with_no_name(tmp_path: Path) -> None:
    uid = unnamed_id()
    assert UNSHARE is not None
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}  # what docker gives an unknown user
    done = subprocess.run(
        [UNSHARE, "--user", f"--map-user={uid}", f"--map-group={uid}", sys.executable, "-I", "-m", "chrono_ci", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    log = done.stdout + done.stderr
    if ctypes.util.find_library("nss_wrapper") is None:
        assert done.returncode == 4, log
        assert f"cannot start as user id {uid}: it has no name" in log
        assert "libnss-wrapper" in log and "--scratch-url" in log
        assert "Traceback" not in log
    else:
        assert done.returncode == 0, log
        assert "a restore-proven backup of demo_shop" in log
        assert list((tmp_path / "chrono-ci-demo").glob("*.sql.zst"))
    assert not list(Path(tempfile.gettempdir()).glob("chrono-ci-pg-*/passwd")), "the lent passwd file is removed"
