"""Which records (backup_metadata.json entries, S3 object metadata) chrono-ci believes, and why not the others.

Anyone who can write the backup folder or the bucket can write an archive and a record that matches it. A record
is *trusted* only when it is a plausible record of ours: our archive name, every field of the right type and
consistent with the name, a size no real archive is below and that matches the bytes, a creation time that
agrees with the name's timestamp and is not in the future; and, with BACKUP_SIGNING_KEY set, a valid signature.
Retention counts and deletes only trusted records, status believes only them, and a restore needs one (or
--allow-unlisted). Every other record is reported, never counted and never deleted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from chrono_ci.archive.names import KINDS, ArchiveName
from chrono_ci.archive.safefile import regular_file_size
from chrono_ci.archive.signing import Record, SigningKey
from chrono_ci.errors import ObjectNotFound
from chrono_ci.retention.policy import ArchiveRef
from chrono_ci.storage.base import ObjectInfo, Storage

# Below every archive chrono-ci makes. Measured with chrono-ci itself on an empty database (PostgreSQL 18.6 and
# 15.18, each with its own pg_dump, 5 runs each): gzip -9 374 bytes, gzip -1 379, zstd -19 383, zstd -1 392,
# with age encryption (passphrase or recipient) 554 and more, uncompressed 670 (pg_dump 18) and 693 (pg_dump 15).
# The SQL of an empty database is pg_dump's fixed header and trailer; nothing chrono-ci writes is smaller.
MIN_ARCHIVE_BYTES = 256
# A record may be stamped a little ahead of this machine's clock (another runner's clock), not more.
CLOCK_SKEW = timedelta(minutes=5)
_SHA256 = re.compile(r"[0-9a-f]{64}")
REMOTE_STAT_WORKERS = 8

# What a signature check found: "valid", "invalid" or "missing" with a key; without one, "unchecked" (a signature
# is there but there is no key to check it) or "none".
SIGNATURE_STATES = ("valid", "invalid", "missing", "unchecked", "none")


@dataclass(frozen=True)
class Verdict:
    trusted: bool
    signature: str  # one of SIGNATURE_STATES
    problem: str | None = None  # why it is not trusted; None when it is

    def as_dict(self) -> dict[str, Any]:
        return {"trusted": self.trusted, "signature": self.signature, "problem": self.problem}


@dataclass(frozen=True)
class Fields:
    """A record's claims, from a manifest entry or an S3 object's metadata, not yet believed."""

    kind: object
    series: object
    source: object
    created_at: object
    size: object  # None: not recorded (S3 objects written before chrono-size existed)
    sha256: object
    compression: object
    signature: object


def entry_fields(entry: Mapping[str, Any]) -> Fields:
    return Fields(
        kind=entry.get("kind"),
        series=entry.get("series"),
        source=entry.get("source"),
        created_at=entry.get("created_at"),
        size=entry.get("size_bytes"),
        sha256=entry.get("sha256"),
        compression=entry.get("compression"),
        signature=entry.get("signature"),
    )


def metadata_fields(metadata: Mapping[str, str]) -> Fields:
    meta = {name.lower(): value for name, value in metadata.items()}
    size_text = meta.get("chrono-size")
    size: object = int(size_text) if size_text is not None and size_text.isdigit() else size_text
    source = meta.get("chrono-source")
    return Fields(
        kind=meta.get("chrono-kind"),
        series=meta.get("chrono-series"),
        source=unquote(source) if source is not None else None,
        created_at=meta.get("chrono-created-at"),
        size=size,
        sha256=meta.get("sha256"),
        compression=meta.get("chrono-compression"),
        signature=meta.get("chrono-signature"),
    )


def record_of(name: str, size: int, fields: Fields) -> Record:
    return Record(
        file=name,
        size=size,
        sha256=str(fields.sha256),
        source=str(fields.source),
        kind=str(fields.kind),
        created_at=str(fields.created_at),
    )


def vet(name: str, fields: Fields, actual_size: int | None, key: SigningKey | None, now: datetime) -> Verdict:
    """Whether the record `fields` of archive `name` is believed; `actual_size` is the size of the copy it
    describes here (None: no copy here to compare with)."""
    signature = _signature_state(name, fields, actual_size, key)
    problem = _problem(name, fields, actual_size, now)
    if problem is None and key is not None and signature != "valid":
        problem = (
            "it is not signed, and BACKUP_SIGNING_KEY is set"
            if signature == "missing"
            else "its signature does not match (forged, altered, or signed with another key)"
        )
    return Verdict(problem is None, signature, problem)


def created_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None and moment.utcoffset() is not None else None


def _signature_state(name: str, fields: Fields, actual_size: int | None, key: SigningKey | None) -> str:
    if fields.signature in (None, ""):
        return "missing" if key is not None else "none"
    if key is None:
        return "unchecked"
    size = actual_size if actual_size is not None else fields.size
    if not isinstance(size, int) or isinstance(size, bool):
        return "invalid"
    return "valid" if key.verify(record_of(name, size, fields), fields.signature) else "invalid"


def _problem(name: str, fields: Fields, actual_size: int | None, now: datetime) -> str | None:
    parsed = ArchiveName.parse(name)
    if parsed is None:
        return "its name is not a chrono-ci archive name"
    if fields.kind not in KINDS or fields.kind != parsed.kind:
        return f"its recorded kind {_shown(fields.kind)} is not the {parsed.kind} its name says"
    if fields.series is not None and fields.series != parsed.series:
        return f"its recorded series {_shown(fields.series)} is not the {parsed.series} its name says"
    if fields.compression is not None and fields.compression != parsed.compression:
        return f"its recorded compression {_shown(fields.compression)} is not the {parsed.compression} its name says"
    if not isinstance(fields.source, str) or not fields.source:
        return "it records no source database"
    if not isinstance(fields.sha256, str) or not _SHA256.fullmatch(fields.sha256):
        return "its recorded sha256 is not 64 hexadecimal digits"
    recorded = fields.size
    if recorded is not None and (not isinstance(recorded, int) or isinstance(recorded, bool) or recorded < 0):
        return "its recorded size is not a whole number"
    if recorded is not None and actual_size is not None and recorded != actual_size:
        return f"it is {actual_size} bytes, and its record says {recorded}"
    size = actual_size if actual_size is not None else recorded
    if size is None:
        return "it records no size"
    if size < MIN_ARCHIVE_BYTES:
        return (
            f"it is {size} bytes, smaller than any archive chrono-ci makes (an empty database gives more than "
            f"{MIN_ARCHIVE_BYTES})"
        )
    created = created_time(fields.created_at)
    if created is None:
        return "its recorded creation time is not an ISO 8601 time with a time zone"
    if created.astimezone(UTC).replace(microsecond=0) != parsed.stamp:
        return "its recorded creation time does not agree with the time in its name"
    if created > now + CLOCK_SKEW:
        return "its recorded creation time is in the future"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Vetted:
    """One record (or one file or object of ours that no record describes), judged."""

    file: str
    location: str  # the folder or the storage URL
    verdict: Verdict
    entry: Mapping[str, Any] | None = None  # the manifest entry, or the object's metadata
    size: int | None = None  # of the copy here; None when there is none
    ref: ArchiveRef | None = None  # for retention; set when trusted

    @property
    def trusted(self) -> bool:
        return self.verdict.trusted

    def rejection(self) -> dict[str, Any]:
        """What --json reports for a record that is not trusted."""
        return {"file": self.file, "location": self.location, **self.verdict.as_dict()}


def vet_folder(
    folder: Path, entries: Iterable[Mapping[str, Any]], key: SigningKey | None, now: datetime
) -> list[Vetted]:
    """Every manifest entry with a chrono-ci name, and every file with one that no entry lists, judged.

    An entry whose file is not in the folder (uploaded and not kept, or already gone) is judged on its fields
    alone, with `size` None.
    """
    listed: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        listed.setdefault(str(entry["file"]), []).append(entry)
    location = str(folder)
    found: list[Vetted] = []
    for name, same in listed.items():
        parsed = ArchiveName.parse(name)
        if parsed is None:
            continue  # not ours to judge: never opened, never deleted, never counted
        size = regular_file_size(folder / name)
        if len(same) > 1:
            # Two records for one file could be kept by one decision and deleted by the other.
            verdict = Verdict(False, "none", "it is listed more than once in backup_metadata.json")
            found.append(Vetted(name, location, verdict, same[-1], size))
            continue
        entry = same[0]
        fields = entry_fields(entry)
        verdict = vet(name, fields, size, key, now)
        ref = _ref(name, parsed, fields) if verdict.trusted else None
        found.append(Vetted(name, location, verdict, entry, size, ref))
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.name in listed or ArchiveName.parse(path.name) is None:
                continue
            size = regular_file_size(path)
            problem = "it is not listed in backup_metadata.json" if size is not None else "it is not a regular file"
            found.append(Vetted(path.name, location, Verdict(False, "none", problem), None, size))
    return found


def vet_bucket(
    storage: Storage, key: SigningKey | None, now: datetime, *, on_vanished: Callable[[str], None] | None = None
) -> list[Vetted]:
    """Every object with a chrono-ci name directly under the storage's prefix, judged by its own metadata.

    Each needs a HEAD for its metadata; they run a few at a time.
    """
    candidates = [info for info in storage.list() if ArchiveName.parse(info.key) is not None]

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
    for info in stats:
        if info is None:
            continue
        parsed = ArchiveName.parse(info.key)
        assert parsed is not None
        meta = {name.lower(): value for name, value in info.metadata.items()}
        if "chrono-kind" not in meta:
            verdict = Verdict(False, "none", "it has no chrono-ci metadata")
            found.append(Vetted(info.key, storage.url, verdict, meta, info.size))
            continue
        fields = metadata_fields(meta)
        verdict = vet(info.key, fields, info.size, key, now)
        ref = _ref(info.key, parsed, fields) if verdict.trusted else None
        found.append(Vetted(info.key, storage.url, verdict, meta, info.size, ref))
    return found


def _ref(name: str, parsed: ArchiveName, fields: Fields) -> ArchiveRef:
    created = created_time(fields.created_at)
    assert created is not None  # vet() checked it
    return ArchiveRef(key=name, kind=parsed.kind, database=str(fields.source), created_at=created, series=parsed.series)
