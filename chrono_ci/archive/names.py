"""Archive names (KIND_SERIES_YYYY-MM-DD_HH-MM-SS[_N].sql[.zst|.gz][.age]): how they are made and read back, and
the reservation that keeps two runs in one folder from choosing the same name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chrono_ci.errors import StorageError
from chrono_ci.storage.local import create_held, ensure_private_dir

RESERVED_PREFIX = ".chrono-reserved-"
KINDS = ("postgres", "supabase")
SERIES_WORD = {"backup": "backup", "safety": "safety_backup"}

ARCHIVE_NAME = re.compile(
    r"^(?P<kind>postgres|supabase)_(?P<series>backup|safety_backup)_"
    r"(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})(?:_(?P<seq>\d+))?"
    r"(?P<ext>\.sql(?:\.zst|\.gz)?)(?P<enc>\.age)?$"
)


@dataclass(frozen=True)
class ArchiveName:
    kind: str
    series: str  # "backup" | "safety"
    stamp: datetime
    seq: int
    compression: str
    encrypted: bool

    @staticmethod
    def parse(name: str) -> ArchiveName | None:
        match = ARCHIVE_NAME.match(name)
        if not match:
            return None
        ext = match["ext"]
        compression = "zstd" if ext.endswith(".zst") else "gzip" if ext.endswith(".gz") else "none"
        stamp = datetime.strptime(match["stamp"], "%Y-%m-%d_%H-%M-%S").replace(tzinfo=UTC)
        series = "safety" if match["series"] == "safety_backup" else "backup"
        return ArchiveName(match["kind"], series, stamp, int(match["seq"] or 1), compression, bool(match["enc"]))


def archive_name(kind: str, series: str, moment: datetime, extension: str, seq: int = 1) -> str:
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d_%H-%M-%S")
    suffix = f"_{seq}" if seq > 1 else ""
    return f"{kind}_{SERIES_WORD[series]}_{stamp}{suffix}{extension}"


@dataclass
class Reservation:
    """An archive name claimed by a hidden marker, held (flock) until `release()` or the process's death."""

    name: str
    marker: Path
    fd: int

    def release(self) -> None:
        if self.fd < 0:
            return
        self.marker.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = -1


def reserve_archive_name(folder: Path, kind: str, series: str, moment: datetime, extension: str) -> Reservation:
    """A name nobody else holds: two backups in the same second, even from two processes, get different names.

    The claim is a hidden marker file created with O_EXCL; it does not look like an archive, so a crash leaves
    nothing that could pass for a backup, and the next run removes it (nobody holds it any more). The caller
    releases the reservation once the archive is in place.
    """
    ensure_private_dir(folder)
    for seq in range(1, 10_000):
        name = archive_name(kind, series, moment, extension, seq)
        if (folder / name).exists():
            continue
        marker = folder / f"{RESERVED_PREFIX}{name}"
        try:
            fd = create_held(marker)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(
                f"Cannot write in the backup folder {folder}: {exc.strerror}.",
                hint="Check the folder's owner and mode, or set BACKUP_DIR to a folder you can write to.",
            ) from exc
        reservation = Reservation(name, marker, fd)
        if (folder / name).exists():  # made by another process between our two checks
            reservation.release()
            continue
        return reservation
    raise StorageError(f"No free archive name left in {folder} for {moment:%Y-%m-%d %H:%M:%S}.")
