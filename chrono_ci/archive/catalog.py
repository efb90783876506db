"""The one catalog: which archives exist in a backup folder or under a storage prefix, each with its record (a
backup_metadata.json entry, or the object's own metadata) judged by chrono_ci/archive/provenance.py.

Listing, status, retention, `backup test` and recovery all start here, so that they agree on what an archive of
ours is, which record describes it and whether that record is believed. An archive with our name that no record
describes is in the catalog too, never trusted; a file or object without our name is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from chrono_ci.archive.manifest import Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.provenance import Verdict, vet
from chrono_ci.archive.record import ArchiveRecord, Fields, has_our_metadata
from chrono_ci.archive.safefile import regular_file_size
from chrono_ci.archive.signing import SigningKey
from chrono_ci.errors import ObjectNotFound
from chrono_ci.storage.base import ObjectInfo, Storage

# Each object's metadata needs a HEAD; a few at a time, so that a bucket of hundreds answers in seconds.
REMOTE_STAT_WORKERS = 8


@dataclass(frozen=True)
class Vetted:
    """One archive of ours (a record, or a file or object with our name that no record describes), judged."""

    file: str  # the archive's name
    location: str  # the folder or the storage URL
    verdict: Verdict
    record: ArchiveRecord | None = None  # None: no record describes it
    size: int | None = None  # of the copy here; None when there is none (or it is not a regular file)
    key: str = ""  # the object's key under the storage's prefix; the name in a folder

    @property
    def trusted(self) -> bool:
        return self.verdict.trusted

    @property
    def name(self) -> ArchiveName:
        parsed = ArchiveName.parse(self.file)
        assert parsed is not None  # the catalog holds nothing else
        return parsed

    @property
    def created(self) -> datetime:
        """When it was made: its record's time when the record is believed, else the time in its name."""
        recorded = self.record.created if self.record is not None and self.trusted else None
        return recorded or self.name.stamp

    def rejection(self) -> dict[str, Any]:
        """What --json reports for a record that is not trusted."""
        return {"file": self.file, "location": self.location, **self.verdict.as_dict()}


def in_folder(
    folder: Path,
    key: SigningKey | None,
    now: datetime,
    entries: Iterable[Mapping[str, Any]] | None = None,
) -> list[Vetted]:
    """Every manifest entry with our name, and every file with our name that no entry lists, judged.

    `entries` are the manifest's (read here when not given: retention passes the ones it holds under the lock).
    An entry whose file is not in the folder (uploaded and not kept, or gone) is judged on its fields alone.
    """
    listed: dict[str, list[Mapping[str, Any]]] = {}
    for entry in Manifest(folder).read() if entries is None else entries:
        listed.setdefault(str(entry["file"]), []).append(entry)
    location = str(folder)
    found: list[Vetted] = []
    for name, same in listed.items():
        if ArchiveName.parse(name) is None:
            continue  # not ours to judge: never opened, never deleted, never counted
        size = regular_file_size(folder / name)
        record = ArchiveRecord.from_entry(same[-1])
        if len(same) > 1:
            # Two records for one file could be kept by one decision and deleted by the other.
            verdict = Verdict(False, "none", "it is listed more than once in backup_metadata.json")
        else:
            verdict = vet(name, Fields.of_entry(same[0]), size, key, now)
        found.append(Vetted(name, location, verdict, record, size, name))
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.name in listed or ArchiveName.parse(path.name) is None:
                continue
            size = regular_file_size(path)
            problem = "it is not listed in backup_metadata.json" if size is not None else "it is not a regular file"
            found.append(Vetted(path.name, location, Verdict(False, "none", problem), None, size, path.name))
    return found


def in_storage(
    storage: Storage,
    key: SigningKey | None,
    now: datetime,
    *,
    depth: Literal["direct", "any"] = "direct",
    on_vanished: Callable[[str], None] | None = None,
) -> list[Vetted]:
    """Every object with our name under the storage's prefix, judged by its own metadata: directly under it
    (retention, listing), or at any depth (status, which may watch several prefixes at once)."""

    def ours(info: ObjectInfo) -> bool:
        name = info.key.rsplit("/", 1)[-1] if depth == "any" else info.key
        return ArchiveName.parse(name) is not None

    candidates = [info for info in storage.list() if ours(info)]

    def stat(info: ObjectInfo) -> ObjectInfo | None:
        try:
            return storage.stat(info.key)
        except ObjectNotFound:
            if on_vanished is not None:
                on_vanished(info.key)
            return None  # removed between the listing and now

    with ThreadPoolExecutor(max_workers=REMOTE_STAT_WORKERS) as pool:
        stats = list(pool.map(stat, candidates))
    found: list[Vetted] = []
    for listed, info in zip(candidates, stats, strict=True):
        if info is None:
            continue
        name = listed.key.rsplit("/", 1)[-1]
        if not has_our_metadata(info.metadata):
            verdict = Verdict(False, "none", "it has no chrono-ci metadata")
            found.append(Vetted(name, storage.url, verdict, None, info.size, listed.key))
            continue
        verdict = vet(name, Fields.of_metadata(info.metadata), info.size, key, now)
        record = ArchiveRecord.from_metadata(name, info.metadata, info.size)
        found.append(Vetted(name, storage.url, verdict, record, info.size, listed.key))
    return found


def trusted_records(vetted: Iterable[Vetted]) -> list[ArchiveRecord]:
    return [v.record for v in vetted if v.trusted and v.record is not None]


def newest_per_kind(records: Iterable[ArchiveRecord]) -> list[ArchiveRecord]:
    """The newest ordinary backup of each kind (safety backups aside), ordered by kind."""
    newest: dict[str, ArchiveRecord] = {}
    for record in records:
        if record.series != "backup" or ArchiveName.parse(record.file) is None:
            continue
        if record.kind not in newest or record.created_at > newest[record.kind].created_at:
            newest[record.kind] = record
    return [record for _, record in sorted(newest.items())]
