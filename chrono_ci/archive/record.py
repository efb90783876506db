"""One archive record: what chrono-ci knows about one archive, typed, and its two written forms.

A record is written as an entry of backup_metadata.json (chrono_ci/archive/manifest.py) and, for an uploaded
object, as the object's own `chrono-*` metadata. `ArchiveRecord` converts to and from both; `Fields` are the
claims a written record makes before chrono-ci believes them (chrono_ci/archive/provenance.py judges them), read
by the one parser of each form below. No other module reads a manifest entry's keys or an object's metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from chrono_ci.archive.signing import Record, SigningKey
from chrono_ci.config.options import Compression
from chrono_ci.storage.base import Seal
from chrono_ci.timestamps import parse_instant

# The object metadata chrono-ci writes (S3 lower-cases the names it returns); sha256 is the store's own.
META_KIND = "chrono-kind"
META_SERIES = "chrono-series"
META_SOURCE = "chrono-source"
META_CREATED_AT = "chrono-created-at"
META_COMPRESSION = "chrono-compression"
META_SIZE = "chrono-size"
META_SIGNATURE = "chrono-signature"
META_SHA256 = "sha256"


@dataclass(frozen=True)
class Fields:
    """A record's claims, from a manifest entry or an object's metadata, not yet believed: any JSON value."""

    kind: object
    series: object
    source: object
    created_at: object
    size: object  # None: not recorded (S3 objects written before chrono-size existed)
    sha256: object
    compression: object
    signature: object

    @staticmethod
    def of_entry(entry: Mapping[str, Any]) -> Fields:
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

    @staticmethod
    def of_metadata(metadata: Mapping[str, str]) -> Fields:
        meta = lowered(metadata)
        size_text = meta.get(META_SIZE)
        size: object = int(size_text) if size_text is not None and size_text.isdigit() else size_text
        source = meta.get(META_SOURCE)
        return Fields(
            kind=meta.get(META_KIND),
            series=meta.get(META_SERIES),
            source=unquote(source) if source is not None else None,
            created_at=meta.get(META_CREATED_AT),
            size=size,
            sha256=meta.get(META_SHA256),
            compression=meta.get(META_COMPRESSION),
            signature=meta.get(META_SIGNATURE),
        )

    def signed(self, name: str, size: int) -> Record:
        """What a signature covers, from these claims."""
        return Record(
            file=name,
            size=size,
            sha256=str(self.sha256),
            source=str(self.source),
            kind=str(self.kind),
            created_at=str(self.created_at),
        )


def lowered(metadata: Mapping[str, str]) -> dict[str, str]:
    """Object metadata with S3's case rules: names compare lower-cased."""
    return {name.lower(): value for name, value in metadata.items()}


def has_our_metadata(metadata: Mapping[str, str]) -> bool:
    return bool(lowered(metadata).get(META_KIND))


@dataclass(frozen=True)
class ArchiveRecord:
    """One archive: what the backup that made it recorded. The manifest holds every field; an object's metadata
    only the ones that say what it is (kind, series, source, time, compression, size, sha256, signature)."""

    file: str
    kind: str
    series: str = "backup"
    database: str | None = None
    host: str | None = None
    port: int | None = None
    source: str = ""
    created_at: str = ""  # as written: a signature covers the text
    size_bytes: int | None = None
    sha256: str | None = None
    raw_size_bytes: int | None = None
    compression: str = "none"
    compression_level: int | None = None
    format: str = "plain"
    profile: str | None = None
    parts: tuple[str, ...] = ()
    encryption: str | None = None
    server_version: str | None = None
    pg_dump_version: str | None = None
    duration_seconds: float | None = None
    tables: Mapping[str, int] | None = None
    verified: Mapping[str, Any] | None = None
    tool_version: str | None = None
    local: bool = True
    uploads: tuple[Mapping[str, Any], ...] = ()
    signature: str | None = None
    # Fields a newer chrono-ci wrote, kept as they were.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    # --- the manifest entry ------------------------------------------------------------------------------------

    @staticmethod
    def from_entry(entry: Mapping[str, Any]) -> ArchiveRecord:
        """The record of a manifest entry whose fields have the types chrono_ci/archive/manifest.py checks."""
        known = {f.name for f in fields(ArchiveRecord)} - {"extra"}
        values: dict[str, Any] = {key: value for key, value in entry.items() if key in known and value is not None}
        for key in ("parts", "uploads"):
            if key in values:
                values[key] = tuple(values[key])
        for key in ("kind", "series", "source", "created_at", "compression"):
            if key in values and not isinstance(values[key], str):
                values[key] = str(values[key])
        values.setdefault("kind", "")
        extra = {key: value for key, value in entry.items() if key not in known}
        return ArchiveRecord(**values, extra=extra)

    def to_entry(self) -> dict[str, Any]:
        """The manifest entry, in the order chrono-ci has always written it."""
        entry: dict[str, Any] = {
            "file": self.file,
            "kind": self.kind,
            "series": self.series,
            "database": self.database,
            "host": self.host,
            "port": self.port,
            "source": self.source,
            "created_at": self.created_at,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "raw_size_bytes": self.raw_size_bytes,
            "compression": self.compression,
            "compression_level": self.compression_level,
            "format": self.format,
            "profile": self.profile,
            "parts": list(self.parts),
            "encryption": self.encryption,
            "server_version": self.server_version,
            "pg_dump_version": self.pg_dump_version,
            "duration_seconds": self.duration_seconds,
            "tables": dict(self.tables) if self.tables is not None else None,
            "verified": dict(self.verified) if self.verified is not None else None,
            "tool_version": self.tool_version,
            "local": self.local,
            "uploads": [dict(upload) for upload in self.uploads],
        }
        if self.signature is not None:
            entry["signature"] = self.signature
        return {**entry, **self.extra}

    # --- the object's metadata ---------------------------------------------------------------------------------

    @staticmethod
    def from_metadata(key: str, metadata: Mapping[str, str], size: int) -> ArchiveRecord:
        """The record an object carries; an object written before chrono-size existed has its own size."""
        claims = Fields.of_metadata(metadata)
        recorded = claims.size if isinstance(claims.size, int) else None

        def text(value: object) -> str | None:
            return value if isinstance(value, str) else None

        source = text(claims.source) or ""
        return ArchiveRecord(
            file=key,
            kind=text(claims.kind) or "",
            series=text(claims.series) or "backup",
            database=source.rsplit("/", 1)[-1] if "/" in source else None,
            source=source,
            created_at=text(claims.created_at) or "",
            size_bytes=size if recorded is None else recorded,
            sha256=text(claims.sha256),
            compression=text(claims.compression) or "none",
            signature=text(claims.signature),
        )

    def metadata(self) -> dict[str, str]:
        """What an uploaded object says about itself, so that retention and status can work from the bucket
        alone; the size and the signature follow once the bytes are stored (`seal`)."""
        return {
            META_KIND: self.kind,
            META_SERIES: self.series,
            META_SOURCE: quote(self.source, safe=""),
            META_CREATED_AT: self.created_at,
            META_COMPRESSION: self.compression,
        }

    def seal(self, key: SigningKey | None) -> Seal:
        """The metadata an object learns once its bytes are all stored: its size, and with a key the signature."""

        def sealed(size: int, sha256: str) -> dict[str, str]:
            found = {META_SIZE: str(size)}
            if key is not None:
                found[META_SIGNATURE] = key.sign(replace(self, size_bytes=size, sha256=sha256).signed())
            return found

        return sealed

    # --- reading it ----------------------------------------------------------------------------------------------

    def claims(self) -> Fields:
        return Fields.of_entry(self.to_entry())

    def signed(self) -> Record:
        """What the signature covers."""
        return Record(
            file=self.file,
            size=self.size_bytes or 0,
            sha256=self.sha256 or "",
            source=self.source,
            kind=self.kind,
            created_at=self.created_at,
        )

    @property
    def created(self) -> datetime | None:
        """The recorded creation time, when it is an ISO 8601 time with a time zone."""
        return parse_instant(self.created_at)

    @property
    def stored_compression(self) -> Compression:
        """The compression its bytes are in, as the readers take it (anything unknown is read as plain SQL)."""
        value = self.compression
        return "zstd" if value == "zstd" else "gzip" if value == "gzip" else "none"

    @property
    def verified_ok(self) -> bool | None:
        """Whether its check (or restore-verification) passed; None when no result is recorded."""
        return bool(self.verified.get("ok")) if self.verified is not None else None
