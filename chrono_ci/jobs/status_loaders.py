"""Where `status` finds the archives it judges: a backup folder (its backup_metadata.json, and the chrono-ci files
on disk it does not list) or an S3 prefix (the objects and the record in their metadata), each record vetted
(chrono_ci.archive.provenance) before it counts."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chrono_ci.archive.manifest import Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.provenance import entry_fields, metadata_fields, vet
from chrono_ci.archive.safefile import regular_file_size
from chrono_ci.archive.signing import SigningKey
from chrono_ci.errors import ObjectNotFound
from chrono_ci.jobs.status import S3_STAT_WORKERS, Copy, StatusArchive
from chrono_ci.storage.base import ObjectInfo, Storage


def from_folder(path: Path, key: SigningKey | None = None, now: datetime | None = None) -> list[StatusArchive]:
    """Every archive backup_metadata.json in `path` lists, and every chrono-ci file on disk it does not.

    Raises StorageError when the metadata is damaged or unreadable: a status guessed from file names alone
    would report backups as good that nobody verified.
    """
    entries: dict[str, Mapping[str, Any]] = {str(entry["file"]): entry for entry in Manifest(path).read()}
    moment = now or datetime.now(UTC)
    found: list[StatusArchive] = []
    for name, entry in entries.items():
        parsed = ArchiveName.parse(name)
        if parsed is not None:
            verdict = vet(name, entry_fields(entry), regular_file_size(path / name), key, moment)
            found.append(
                replace(_from_entry(path, entry, parsed), signature=verdict.signature, distrust=verdict.problem)
            )
    if path.is_dir():
        for file in sorted(path.iterdir()):
            parsed = ArchiveName.parse(file.name)
            size = regular_file_size(file)
            if parsed is None or file.name in entries or size is None:
                continue
            found.append(
                StatusArchive(
                    file=file.name,
                    kind=parsed.kind,
                    series=parsed.series,
                    source="",
                    database=None,
                    created_at=parsed.stamp,
                    size_bytes=size,
                    copies=(Copy("local", str(file)),),
                    listed=False,
                )
            )
    return found


def _from_entry(folder: Path, entry: Mapping[str, Any], parsed: ArchiveName) -> StatusArchive:
    name = str(entry["file"])
    copies: list[Copy] = []
    local = folder / name
    # lstat, not stat: a symbolic link planted under an archive's name is not a copy of the backup.
    size_on_disk = regular_file_size(local)
    on_disk = size_on_disk is not None
    # "local": false means the file was uploaded and deliberately not kept (KEEP_LOCAL=false): its absence is
    # not a loss. A file that is there anyway still counts.
    if on_disk or entry.get("local", True) is not False:
        copies.append(Copy("local", str(local), ok=on_disk, error=None if on_disk else "not found in BACKUP_DIR"))
    uploads = entry.get("uploads")
    for upload in uploads if isinstance(uploads, list) else []:
        if not isinstance(upload, Mapping):
            continue
        target = str(upload.get("target") or "upload")
        where = upload.get("uri") or upload.get("artifact_url") or upload.get("artifact_id") or ""
        error = upload.get("error")
        copies.append(Copy(target, str(where), bool(upload.get("ok")), str(error) if error else None))
    verified = entry.get("verified")
    verified_ok = bool(verified.get("ok")) if isinstance(verified, Mapping) else False
    level = verified.get("level") if isinstance(verified, Mapping) else None
    raw = entry.get("raw_size_bytes")
    return StatusArchive(
        file=name,
        kind=str(entry.get("kind") or parsed.kind),
        series=str(entry.get("series") or parsed.series),
        source=str(entry.get("source") or _source_of(entry)),
        database=str(entry["database"]) if entry.get("database") else None,
        created_at=_parse_time(entry.get("created_at"), parsed.stamp),
        size_bytes=_int(entry.get("size_bytes"), size_on_disk or 0),
        raw_size_bytes=_int(raw, 0) if raw is not None else None,
        verified_ok=verified_ok,
        verified_level=str(level) if level else None,
        copies=tuple(copies),
    )


def from_s3(storage: Storage, key: SigningKey | None = None, now: datetime | None = None) -> list[StatusArchive]:
    """Every object under the storage's prefix (at any depth) that has chrono-ci's name.

    An object is a good backup when its metadata says chrono-ci put it there (chrono-kind): the upload happens
    only for an archive that passed its check. Each object needs a HEAD for its metadata; they run a few at a
    time so that a bucket with hundreds of archives answers in seconds.
    """
    candidates = [info for info in storage.list() if ArchiveName.parse(info.key.rsplit("/", 1)[-1]) is not None]
    moment = now or datetime.now(UTC)
    base = storage.url.rstrip("/")

    def stat(info: ObjectInfo) -> ObjectInfo | None:
        try:
            return storage.stat(info.key)
        except ObjectNotFound:
            return None  # rotated away between the listing and now

    with ThreadPoolExecutor(max_workers=S3_STAT_WORKERS) as pool:
        stats = list(pool.map(stat, candidates))
    found: list[StatusArchive] = []
    for listed, info in zip(candidates, stats, strict=True):
        if info is None:
            continue
        name = listed.key.rsplit("/", 1)[-1]
        parsed = ArchiveName.parse(name)
        assert parsed is not None
        meta = {name.lower(): value for name, value in info.metadata.items()}
        ours = bool(meta.get("chrono-kind"))
        source = urllib.parse.unquote(meta.get("chrono-source", "")) if ours else ""
        verdict = vet(name, metadata_fields(meta), info.size, key, moment)
        found.append(
            StatusArchive(
                file=name,
                kind=meta.get("chrono-kind") or parsed.kind,
                series=meta.get("chrono-series") or parsed.series,
                source=source,
                database=source.rsplit("/", 1)[-1] if "/" in source else None,
                created_at=_parse_time(meta.get("chrono-created-at"), parsed.stamp),
                size_bytes=info.size,
                verified_ok=None,
                copies=(Copy("s3", f"{base}/{listed.key}"),),
                listed=ours,
                signature=verdict.signature,
                distrust=verdict.problem if ours else None,
            )
        )
    return found


def _source_of(entry: Mapping[str, Any]) -> str:
    host, port, database = entry.get("host"), entry.get("port"), entry.get("database")
    if host and database:
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"{shown}:{port or 5432}/{database}"
    return ""


def _parse_time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def _int(value: object, fallback: int) -> int:
    if isinstance(value, bool):
        return fallback
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return fallback
