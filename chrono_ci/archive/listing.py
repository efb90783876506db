"""What `recovery list` shows: one row per archive, from the backup folder or from S3, newest marked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chrono_ci.archive.catalog import file_sha256, list_archives
from chrono_ci.archive.manifest import Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.provenance import created_time, metadata_fields, vet_bucket, vet_folder
from chrono_ci.archive.safefile import regular_file_size
from chrono_ci.archive.signing import SigningKey
from chrono_ci.errors import StorageError
from chrono_ci.report.console import Reporter, human_size
from chrono_ci.storage.base import Storage


def local_rows(backup_dir: Path, checksums: bool, key: SigningKey | None) -> list[dict[str, Any]]:
    """Every archive in the folder; with `checksums`, each file is re-read and compared with the metadata.

    `signature`, `trusted` and `problem` say whether chrono-ci believes the archive's record (see
    chrono_ci/archive/provenance.py).
    """
    judged = {v.file: v for v in vet_folder(backup_dir, Manifest(backup_dir).read(), key, datetime.now(UTC))}
    rows = []
    for archive in list_archives(backup_dir):
        entry = archive.entry or {}
        status = "unlisted"
        if entry and checksums:
            try:
                status = "ok" if file_sha256(backup_dir, archive.path.name) == entry.get("sha256") else "MISMATCH"
            except StorageError:
                status = "UNREADABLE"
        elif entry:
            status = "not checked"
        verdict = judged[archive.path.name].verdict if archive.path.name in judged else None
        rows.append(
            {
                "file": archive.path.name,
                "kind": archive.kind,
                "series": archive.name.series,
                "database": entry.get("database"),
                "source": entry.get("source"),
                "created_at": archive.created_at,
                "size_bytes": regular_file_size(archive.path) or 0,
                "compression": archive.compression,
                "sha256": entry.get("sha256"),
                "checksum": status,
                "verified": entry.get("verified"),
                **(verdict.as_dict() if verdict else {"trusted": False, "signature": "none", "problem": None}),
            }
        )
    return _mark_newest(rows)


def remote_rows(storage: Storage, key: SigningKey | None) -> list[dict[str, Any]]:
    """Every archive of ours in the bucket, from the objects' own metadata (S3 checked each on upload), with
    whether chrono-ci believes that metadata."""
    judged = vet_bucket(storage, key, datetime.now(UTC))
    rows = []
    for vetted in judged:
        parsed = ArchiveName.parse(vetted.file)
        assert parsed is not None
        fields = metadata_fields(vetted.entry or {})
        source = fields.source if isinstance(fields.source, str) else ""
        created = vetted.ref.created_at if vetted.ref is not None else created_time(fields.created_at)
        rows.append(
            {
                "file": vetted.file,
                "kind": vetted.ref.kind if vetted.ref is not None else parsed.kind,
                "series": parsed.series,
                "database": source.rsplit("/", 1)[-1] if source else None,
                "source": source or None,
                "created_at": (created or parsed.stamp).isoformat().replace("+00:00", "Z"),
                "size_bytes": vetted.size,
                "compression": (vetted.entry or {}).get("chrono-compression"),
                "sha256": (vetted.entry or {}).get("sha256"),
                "checksum": "recorded",
                "location": f"{storage.url.rstrip('/')}/{vetted.file}",
                **vetted.verdict.as_dict(),
            }
        )
    rows.sort(key=lambda row: (row["created_at"], row["file"]))
    return _mark_newest(rows)


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
