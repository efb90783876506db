"""Where `status` finds the archives it judges: the catalog of a backup folder (its backup_metadata.json, and the
chrono-ci files on disk it does not list) or of an S3 prefix (the objects and the record in their metadata), each
record judged by chrono_ci/archive/provenance.py before it counts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from chrono_ci.archive.catalog import Vetted, in_folder, in_storage
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.archive.signing import SigningKey
from chrono_ci.jobs.status import Copy, StatusArchive
from chrono_ci.storage.base import Storage
from chrono_ci.timestamps import parse_instant


def from_folder(path: Path, key: SigningKey | None = None, now: datetime | None = None) -> list[StatusArchive]:
    """Every archive backup_metadata.json in `path` lists, and every chrono-ci file on disk it does not.

    Raises StorageError when the metadata is damaged or unreadable: a status guessed from file names alone
    would report backups as good that nobody verified.
    """
    found: list[StatusArchive] = []
    for vetted in in_folder(path, key, now or datetime.now(UTC)):
        if vetted.record is not None:
            found.append(_from_record(path, vetted, vetted.record))
        elif vetted.size is not None:
            parsed = vetted.name
            found.append(
                StatusArchive(
                    file=vetted.file,
                    kind=parsed.kind,
                    series=parsed.series,
                    source="",
                    database=None,
                    created_at=parsed.stamp,
                    size_bytes=vetted.size,
                    copies=(Copy("local", str(path / vetted.file)),),
                    listed=False,
                )
            )
    return found


def _from_record(folder: Path, vetted: Vetted, record: ArchiveRecord) -> StatusArchive:
    copies: list[Copy] = []
    local = folder / vetted.file
    on_disk = vetted.size is not None  # a regular file: a symbolic link planted under its name is no copy
    # "local": false means the file was uploaded and deliberately not kept (KEEP_LOCAL=false): its absence is
    # not a loss. A file that is there anyway still counts.
    if on_disk or record.local:
        copies.append(Copy("local", str(local), ok=on_disk, error=None if on_disk else "not found in BACKUP_DIR"))
    for upload in record.uploads:
        target = str(upload.get("target") or "upload")
        where = upload.get("uri") or upload.get("artifact_url") or upload.get("artifact_id") or ""
        error = upload.get("error")
        copies.append(Copy(target, str(where), bool(upload.get("ok")), str(error) if error else None))
    level = record.verified.get("level") if record.verified is not None else None
    parsed = vetted.name
    return StatusArchive(
        file=vetted.file,
        kind=record.kind or parsed.kind,
        series=record.series or parsed.series,
        source=record.source or _source_of(record),
        database=record.database or None,
        created_at=parse_instant(record.created_at, naive=UTC) or parsed.stamp,
        size_bytes=record.size_bytes if record.size_bytes is not None else vetted.size or 0,
        raw_size_bytes=record.raw_size_bytes,
        verified_ok=bool(record.verified_ok),
        verified_level=str(level) if level else None,
        copies=tuple(copies),
        signature=vetted.verdict.signature,
        distrust=vetted.verdict.problem,
    )


def from_s3(storage: Storage, key: SigningKey | None = None, now: datetime | None = None) -> list[StatusArchive]:
    """Every object under the storage's prefix (at any depth) that has chrono-ci's name.

    An object is a good backup when its metadata says chrono-ci put it there (chrono-kind): the upload happens
    only for an archive that passed its check.
    """
    base = storage.url.rstrip("/")
    found: list[StatusArchive] = []
    for vetted in in_storage(storage, key, now or datetime.now(UTC), depth="any"):
        record, parsed = vetted.record, vetted.name
        source = record.source if record is not None else ""
        found.append(
            StatusArchive(
                file=vetted.file,
                kind=(record.kind if record is not None else "") or parsed.kind,
                series=(record.series if record is not None else "") or parsed.series,
                source=source,
                database=record.database if record is not None else None,
                created_at=(parse_instant(record.created_at, naive=UTC) if record is not None else None)
                or parsed.stamp,
                size_bytes=vetted.size or 0,
                verified_ok=None,
                copies=(Copy("s3", f"{base}/{vetted.key}"),),
                listed=record is not None,
                signature=vetted.verdict.signature,
                distrust=vetted.verdict.problem if record is not None else None,
            )
        )
    return found


def _source_of(record: ArchiveRecord) -> str:
    if record.host and record.database:
        shown = f"[{record.host}]" if ":" in record.host else record.host
        return f"{shown}:{record.port or 5432}/{record.database}"
    return ""
