"""What `recovery list` shows: one row per archive, from the backup folder or from S3, newest marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chrono_ci.catalog import file_sha256, list_archives
from chrono_ci.errors import StorageError
from chrono_ci.report import Reporter, human_size
from chrono_ci.safefile import regular_file_size
from chrono_ci.storage.base import Storage


def local_rows(backup_dir: Path, checksums: bool) -> list[dict[str, Any]]:
    """Every archive in the folder; with `checksums`, each file is re-read and compared with the metadata."""
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
            }
        )
    return _mark_newest(rows)


def remote_rows(storage: Storage) -> list[dict[str, Any]]:
    """Every archive of ours in the bucket, from the objects' own metadata (S3 checked each on upload)."""
    from chrono_ci.upload import remote_archives

    found = sorted(remote_archives(storage), key=lambda pair: (pair[1].created_at, pair[0].key))
    rows = [
        {
            "file": info.key,
            "kind": ref.kind,
            "series": ref.series,
            "database": ref.database.rsplit("/", 1)[-1],
            "source": ref.database,
            "created_at": ref.created_at.isoformat().replace("+00:00", "Z"),
            "size_bytes": info.size,
            "compression": info.metadata.get("chrono-compression"),
            "sha256": info.metadata.get("sha256"),
            "checksum": "recorded",
            "location": f"{storage.url.rstrip('/')}/{info.key}",
        }
        for info, ref in found
    ]
    return _mark_newest(rows)


def _mark_newest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows come oldest first: the last ordinary backup of each kind and database is the newest."""
    newest: dict[tuple[str, str], str] = {}
    for row in rows:
        if row["series"] == "backup":
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
            ]
            for row in rows
        ],
        ["file (* newest)", "kind", "database", "created (UTC)", "size", "compression", "checksum"],
    )
