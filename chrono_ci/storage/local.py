"""A folder on the local disk: temp file, fsync, rename; archives 0600, folders 0700.

Every temporary file (and reservation marker) is held by an flock for as long as its run needs it, so that the
next run can tell what a killed run left behind (no live holder) from what a run still going is writing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from chrono_ci.errors import ObjectNotFound, StorageError
from chrono_ci.storage.base import CHUNK_SIZE, ObjectInfo, Seal

TEMP_PREFIX = ".chrono-tmp-"
# The folder's lock: held briefly around every change of backup_metadata.json, and around creating and locking a
# held file (below), so that the sweep of leftovers never sees a file created but not yet locked.
FOLDER_LOCK_NAME = ".backup_metadata.lock"
# What runs leave in the folder while they work: archive temp files, name reservations, manifest temp files.
LEFTOVER_PREFIXES = (TEMP_PREFIX, ".chrono-reserved-", ".backup_metadata.json.tmp-")


def check_writable_dir(path: Path) -> None:
    """Fail early, creating nothing, when `path` could not be created or written as a backup folder."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise StorageError(
            f"The backup folder {path} cannot be used: {probe} is a file, not a folder.",
            hint="Point BACKUP_DIR at a folder, or remove or rename that file.",
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created: {probe} is not writable"
        raise StorageError(
            f"Permission denied: the backup folder {path} {what} by this user.",
            hint=f"Fix the permissions of {probe} (owner and mode; a read-only filesystem cannot be used), or set "
            "BACKUP_DIR to a folder you can write to.",
        )


def ensure_private_dir(path: Path) -> None:
    """Create `path` (0700) if missing and check that we can write there, with an error a person can act on."""
    check_writable_dir(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except PermissionError as exc:
        raise StorageError(
            f"Permission denied: cannot create the backup folder {path}.",
            hint="Create it yourself with the right owner (mkdir -m 700), or set BACKUP_DIR to a folder you can "
            "write to.",
        ) from exc
    except OSError as exc:
        raise StorageError(
            f"Cannot create the backup folder {path}: {exc.strerror}.",
            hint="Set BACKUP_DIR to a folder you can write to.",
        ) from exc


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    try:
        fd = os.open(folder / FOLDER_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _disk_error(exc, folder) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_held(path: Path) -> int:
    """Create `path` (O_EXCL, 0600) and return its descriptor, holding an exclusive flock on it until closed.

    The kernel drops the flock when the process dies, however it dies: a file of ours that nobody holds is a
    leftover. Raises FileExistsError when the name is taken, OSError for the rest.
    """
    with folder_lock(path.parent):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_leftovers(folder: Path) -> list[str]:
    """Remove the temp files and reservation markers that killed runs left in `folder`: those no live process
    holds. Returns their names."""
    if not folder.is_dir():
        return []
    removed: list[str] = []
    with folder_lock(folder):
        for entry in os.scandir(folder):
            if entry.name.startswith(LEFTOVER_PREFIXES) and _remove_if_unheld(folder / entry.name):
                removed.append(entry.name)
    return sorted(removed)


def _remove_if_unheld(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # gone meanwhile, or a link or something else that is not ours: left alone
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live run holds it
        current = os.lstat(path)
        if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
            return False  # replaced since we opened it
        path.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _check_key(key: str) -> None:
    if not key or "/" in key or "\0" in key or key in (".", "..") or key.startswith(TEMP_PREFIX):
        raise StorageError(f"Invalid object name for a local folder: {key!r}.", hint="Use a plain file name.")


def _disk_error(exc: OSError, path: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(
            f"The disk holding {path} is full; the partial archive was removed.",
            hint="Free space there (or lower MAX_BACKUPS), or set BACKUP_DIR to a disk with room, then run again.",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"Permission denied while writing to {path}.",
            hint="Check the folder's owner and mode, or set BACKUP_DIR to a folder you can write to.",
        )
    return StorageError(f"Writing to {path} failed: {exc.strerror or exc}.", hint="Check the disk and run again.")


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        return str(self.root)

    def path_of(self, key: str) -> Path:
        _check_key(key)
        return self.root / key

    def put(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None, seal: Seal | None = None
    ) -> ObjectInfo:
        target = self.path_of(key)
        ensure_private_dir(self.root)
        temp = self.root / f"{TEMP_PREFIX}{secrets.token_hex(8)}-{key}"
        try:
            fd = create_held(temp)
        except OSError as exc:
            raise _disk_error(exc, self.root) from exc
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                while chunk := source.read(CHUNK_SIZE):
                    digest.update(chunk)
                    try:
                        _write_all(out, chunk)
                    except OSError as exc:
                        raise _disk_error(exc, self.root) from exc
                try:
                    os.fsync(out.fileno())
                except OSError as exc:
                    raise _disk_error(exc, self.root) from exc
                # Renamed while still held: once unheld, the next run's sweep may take it for a leftover.
                os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        _fsync_dir(self.root)
        # The caller's metadata cannot override the checksum: it must describe the bytes on disk.
        info = self.stat(key)
        sealed = seal(info.size, digest.hexdigest()) if seal is not None else {}
        return replace(info, metadata={**(metadata or {}), **sealed, "sha256": digest.hexdigest()})

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"No archive named {key} in {self.root}.") from exc
        except IsADirectoryError as exc:
            raise ObjectNotFound(f"{key} in {self.root} is a folder, not an archive.") from exc

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in os.scandir(self.root):
            internal = entry.name.startswith(LEFTOVER_PREFIXES) or entry.name == FOLDER_LOCK_NAME
            if entry.name.startswith(prefix) and not internal and entry.is_file():
                found.append(self._info(entry.name, entry.stat()))
        return found

    def stat(self, key: str) -> ObjectInfo:
        path = self.path_of(key)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"No archive named {key} in {self.root}.") from exc
        if not path.is_file():
            raise ObjectNotFound(f"{key} in {self.root} is not a file.")
        return self._info(key, st)

    def delete(self, key: str) -> None:
        try:
            self.path_of(key).unlink()
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"No archive named {key} in {self.root}.") from exc

    @staticmethod
    def _info(key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))


def _write_all(out: BinaryIO, data: bytes) -> None:
    # An unbuffered write may take fewer bytes than offered; a silent short write would truncate the archive.
    view = memoryview(data)
    while view:
        written = out.write(view)
        if not written:
            raise OSError(errno.EIO, "write returned 0")
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
