"""The record a remote object carries in its own metadata, so that retention and status can work from the bucket
alone: written at upload (chrono_ci.archive.provenance reads it back, and believes it or not)."""

from __future__ import annotations

from urllib.parse import quote

from chrono_ci.archive.signing import Record, SigningKey
from chrono_ci.storage.base import Seal


def remote_metadata(kind: str, series: str, source: str, created_at: str, compression: str) -> dict[str, str]:
    """What a remote object says about itself, so that retention and status can work from the bucket alone."""
    return {
        "chrono-kind": kind,
        "chrono-series": series,
        "chrono-source": quote(source, safe=""),
        "chrono-created-at": created_at,
        "chrono-compression": compression,
    }


def remote_seal(name: str, kind: str, source: str, created_at: str, key: SigningKey | None) -> Seal:
    """What the object learns once its bytes are all stored: its size, and with a key the record's signature."""

    def seal(size: int, sha256: str) -> dict[str, str]:
        sealed = {"chrono-size": str(size)}
        if key is not None:
            sealed["chrono-signature"] = key.sign(Record(name, size, sha256, source, kind, created_at))
        return sealed

    return seal
