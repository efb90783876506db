"""Reading a file the metadata names, out of the backup folder, without trusting the name.

Names in backup_metadata.json (and files in the folder) are written by whoever can write the folder: nothing here
follows a symbolic link, opens a device or a FIFO, or leaves the folder.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from chrono_ci.archive.names import ArchiveName
from chrono_ci.errors import ObjectNotFound, StorageError


def open_archive(folder: Path, name: str) -> BinaryIO:
    """The archive `name` (a name the metadata gave) of `folder`, opened for reading; StorageError for anything
    but a regular file with chrono-ci's name directly in the folder.

    A name from backup_metadata.json is untrusted: `/dev/zero` or `../elsewhere` must not be read (or hang a
    check forever), nor a FIFO or a symbolic link planted under an archive's name. O_NOFOLLOW refuses the link,
    O_NONBLOCK lets a FIFO be opened and then refused instead of blocking until a writer comes.
    """
    if ArchiveName.parse(name) is None:
        raise StorageError(
            f"backup_metadata.json names {name[:80]!r}, which is not a chrono-ci archive name in {folder}: it "
            "was not read.",
            hint="An entry was edited or forged. Inspect backup_metadata.json; chrono-ci reads only archives "
            "named like postgres_backup_YYYY-MM-DD_HH-MM-SS.sql.zst in the backup folder.",
        )
    path = folder / name
    # Looked at before it is opened: a FIFO or a device is refused without ever being opened; the descriptor is
    # checked again below, in case the name was swapped in between.
    size = regular_file_size(path)
    if size is None and path.is_symlink():
        raise _symlink(name, folder)
    if size is None and os.path.lexists(path):
        raise _not_regular(name, folder)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ObjectNotFound(f"No archive named {name} in {folder}.", hint=_LIST_HINT) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink(name, folder) from None
        raise StorageError(f"Cannot open {name} in {folder}: {exc.strerror}.", hint=_LIST_HINT) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _not_regular(name, folder)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _symlink(name: str, folder: Path) -> StorageError:
    return StorageError(
        f"{name} in {folder} is a symbolic link: chrono-ci reads archives only from regular files in the backup "
        "folder.",
        hint="Replace the link with the archive itself, or give its real path as FILE if you trust it.",
    )


def _not_regular(name: str, folder: Path) -> StorageError:
    return StorageError(
        f"{name} in {folder} is not a regular file (a FIFO, a device or a folder): it was not read.",
        hint="Something other than chrono-ci put it there under an archive's name: remove it.",
    )


_LIST_HINT = "List the archives with `chrono-ci recovery list` (and check BACKUP_DIR)."


def regular_file_size(path: Path) -> int | None:
    """The size of `path` when it is a regular file (not through a symbolic link), else None."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
