"""What `recovery list` shows: one row per archive, from the backup folder or from S3, newest marked."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chrono_ci.archive.catalog import Vetted, in_folder, in_storage
from chrono_ci.archive.safefile import open_archive
from chrono_ci.archive.signing import SigningKey
from chrono_ci.errors import StorageError
from chrono_ci.report.console import Reporter, human_size
from chrono_ci.storage.base import CHUNK_SIZE, Storage
from chrono_ci.timestamps import iso_z


def local_rows(backup_dir: Path, checksums: bool, key: SigningKey | None) -> list[dict[str, Any]]:
    """Every archive file in the folder; with `checksums`, each is re-read and compared with its record.

    `signature`, `trusted` and `problem` say whether chrono-ci believes the archive's record (see
    chrono_ci/archive/provenance.py).
    """
    rows = []
    for vetted in in_folder(backup_dir, key, datetime.now(UTC)):
        if vetted.size is None:
            continue  # no regular file here: uploaded and not kept, gone, or something planted under its name
        record = vetted.record
        checksum = "unlisted"
        if record is not None and checksums:
            try:
                checksum = "ok" if file_sha256(backup_dir, vetted.file) == record.sha256 else "MISMATCH"
            except StorageError:
                checksum = "UNREADABLE"
        elif record is not None:
            checksum = "not checked"
        rows.append(_row(vetted, checksum, str(backup_dir / vetted.file)))
    rows.sort(key=lambda row: (row["created_at"], row["file"]))
    return _mark_newest(rows)


def remote_rows(storage: Storage, key: SigningKey | None) -> list[dict[str, Any]]:
    """Every archive of ours in the bucket, from the objects' own metadata (S3 checked each on upload), with
    whether chrono-ci believes that metadata."""
    rows = [
        _row(vetted, "recorded", f"{storage.url.rstrip('/')}/{vetted.key}")
        for vetted in in_storage(storage, key, datetime.now(UTC))
    ]
    rows.sort(key=lambda row: (row["created_at"], row["file"]))
    return _mark_newest(rows)


def _row(vetted: Vetted, checksum: str, location: str) -> dict[str, Any]:
    """One row of `recovery list`, the same for a folder and a bucket."""
    record = vetted.record
    parsed = vetted.name
    return {
        "file": vetted.file,
        "kind": parsed.kind,
        "series": parsed.series,
        "database": record.database if record is not None else None,
        "source": (record.source or None) if record is not None else None,
        "created_at": record.created_at if record is not None and record.created else iso_z(parsed.stamp),
        "size_bytes": vetted.size or 0,
        "compression": record.compression if record is not None else parsed.compression,
        "sha256": record.sha256 if record is not None else None,
        "checksum": checksum,
        "verified": dict(record.verified) if record is not None and record.verified is not None else None,
        "location": location,
        **vetted.verdict.as_dict(),
    }


def file_sha256(folder: Path, name: str) -> str:
    digest = hashlib.sha256()
    with open_archive(folder, name) as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _mark_newest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows come oldest first: the last ordinary backup of each kind and database is the newest."""
    newest: dict[tuple[str, str], str] = {}
    for row in rows:
        if row["series"] == "backup" and row["trusted"]:
            newest[(row["kind"], str(row["source"] or ""))] = row["file"]
    for row in rows:
        row["newest"] = newest.get((row["kind"], str(row["source"] or ""))) == row["file"]
    return rows


def print_rows(rows: list[dict[str, Any]], location: str, reporter: Reporter) -> None:
    reporter.step(f"{len(rows)} archive(s) in {location}")
    if not rows:
        return
    reporter.table(
        [
            [
                ("* " if row["newest"] else "  ") + row["file"],
                row["kind"] + (" (safety)" if row["series"] == "safety" else ""),
                str(row["database"] or "?"),
                str(row["created_at"])[:19].replace("T", " "),
                human_size(row["size_bytes"]),
                str(row["compression"]),
                row["checksum"],
                _record_text(row),
            ]
            for row in rows
        ],
        ["file (* newest)", "kind", "database", "created (UTC)", "size", "compression", "checksum", "record"],
    )
    for row in rows:
        if not row["trusted"] and row["problem"]:
            reporter.warn(
                f"{row['file']} is not trusted: not counted as a backup, never deleted, not restored without "
                f"--allow-unlisted: {row['problem']}"
            )


def _record_text(row: dict[str, Any]) -> str:
    """What the `record` column says: whether the archive's record is believed, and its signature."""
    signature = row["signature"]
    if row["trusted"]:
        return {"valid": "signed", "unchecked": "signed, no key to check"}.get(signature, "unsigned")
    if signature == "invalid":
        return "BAD SIGNATURE"
    return "UNSIGNED" if signature == "missing" else "UNTRUSTED"
