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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chrono_ci.archive.names import KINDS, ArchiveName
from chrono_ci.archive.record import Fields
from chrono_ci.archive.signing import SigningKey
from chrono_ci.timestamps import parse_instant

# Below every archive chrono-ci makes. Measured with chrono-ci itself on an empty database (PostgreSQL 18.6 and
# 15.18, each with its own pg_dump, 5 runs each): gzip -9 374 bytes, gzip -1 379, zstd -19 383, zstd -1 392,
# with age encryption (passphrase or recipient) 554 and more, uncompressed 670 (pg_dump 18) and 693 (pg_dump 15).
# The SQL of an empty database is pg_dump's fixed header and trailer; nothing chrono-ci writes is smaller.
MIN_ARCHIVE_BYTES = 256
# A record may be stamped a little ahead of this machine's clock (another runner's clock), not more.
CLOCK_SKEW = timedelta(minutes=5)
_SHA256 = re.compile(r"[0-9a-f]{64}")

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


def _signature_state(name: str, fields: Fields, actual_size: int | None, key: SigningKey | None) -> str:
    if fields.signature in (None, ""):
        return "missing" if key is not None else "none"
    if key is None:
        return "unchecked"
    size = actual_size if actual_size is not None else fields.size
    if not isinstance(size, int) or isinstance(size, bool):
        return "invalid"
    return "valid" if key.verify(fields.signed(name, size), fields.signature) else "invalid"


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
    created = parse_instant(fields.created_at)
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
