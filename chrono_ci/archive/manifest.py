"""The metadata manifest of a backup folder (backup_metadata.json): one entry per archive.

The manifest is changed only under an exclusive lock and replaced atomically (temp file, fsync, rename), so two
runs on one folder cannot corrupt it. A damaged manifest is reported, never overwritten, and nothing is ever
deleted on its word.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.errors import StorageError
from chrono_ci.storage.local import ensure_private_dir, folder_lock

MANIFEST_NAME = "backup_metadata.json"


class Manifest:
    """backup_metadata.json: {"backups": [entry, ...]}, one entry per archive."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST_NAME

    def read(self) -> list[dict[str, Any]]:
        """The entries; [] when there is no manifest yet. Raises StorageError when it is damaged."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except UnicodeDecodeError:
            raise StorageError(
                f"{self.path} is damaged: it is not UTF-8 text.", hint=_damaged_hint(self.path)
            ) from None
        except OSError as exc:
            raise StorageError(f"Cannot read {self.path}: {exc.strerror}.", hint="Check its permissions.") from exc
        return _parse_manifest(text, self.path)

    def records(self) -> list[ArchiveRecord]:
        """The entries as records, not yet judged (chrono_ci/archive/catalog.py judges them)."""
        return [ArchiveRecord.from_entry(entry) for entry in self.read()]

    def add(self, record: ArchiveRecord) -> None:
        """Append a record under the folder's lock."""
        with self.locked() as entries:
            entries.append(record.to_entry())

    @contextlib.contextmanager
    def locked(self) -> Iterator[list[dict[str, Any]]]:
        """Hold the folder's manifest lock; the list yielded is written back atomically if it was changed."""
        ensure_private_dir(self.folder)
        with folder_lock(self.folder):
            entries = self.read()
            before = json.dumps(entries, sort_keys=True)
            yield entries
            if json.dumps(entries, sort_keys=True) != before:
                self._write(entries)

    def _write(self, entries: list[dict[str, Any]]) -> None:
        temp = self.folder / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
        data = json.dumps({"backups": entries}, indent=2, ensure_ascii=False) + "\n"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise StorageError(
                    f"The disk holding {self.folder} is full: {MANIFEST_NAME} could not be updated.",
                    hint="Free space and run again; the previous metadata is intact.",
                ) from exc
            raise StorageError(f"Cannot update {self.path}: {exc.strerror}.", hint="Check the folder.") from exc


def _damaged_hint(path: Path) -> str:
    return (
        "chrono-ci never deletes archives on the word of a damaged metadata file, and will not overwrite it. "
        f"Inspect it, or move it aside (mv {path} {path}.damaged): the next backup starts a new one, and "
        "archives it does not list are never rotated away."
    )


def _parse_manifest(text: str, path: Path) -> list[dict[str, Any]]:
    hint = _damaged_hint(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StorageError(f"{path} is damaged: not valid JSON ({exc.msg} at line {exc.lineno}).", hint=hint) from None
    if not isinstance(data, dict) or not isinstance(data.get("backups"), list):
        raise StorageError(f'{path} is damaged: it does not hold {{"backups": [...]}}.', hint=hint)
    entries: list[dict[str, Any]] = data["backups"]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise StorageError(f"{path} is damaged: entry {index} has no file name.", hint=hint)
        for name, value in entry.items():
            expected = _FIELD_TYPES.get(name)
            if expected is not None and not _has_type(value, expected[0], name):
                raise StorageError(
                    f"{path} is damaged: entry {index} has {name} of the wrong type ({_json_type(value)}, where "
                    f"{expected[1]} belongs).",
                    hint=hint,
                )
    return entries


# The fields chrono-ci writes and reads back, with the JSON types each may hold: a field of another type (a
# hand edit, a forgery) stops every command with this message instead of a traceback deep in retention or status.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "kind": ((str,), "a string"),
    "series": ((str,), "a string"),
    "source": ((str,), "a string"),
    "database": ((str, type(None)), "a string"),
    "host": ((str, type(None)), "a string"),
    "port": ((int, type(None)), "a whole number"),
    "created_at": ((str,), "an ISO 8601 time"),
    "size_bytes": ((int,), "a whole number"),
    "sha256": ((str,), "a string"),
    "signature": ((str, type(None)), "a string"),
    "raw_size_bytes": ((int, type(None)), "a whole number"),
    "compression": ((str,), "a string"),
    "compression_level": ((int, type(None)), "a whole number"),
    "encryption": ((str, type(None)), "a string"),
    "duration_seconds": ((int, float, type(None)), "a number"),
    "tables": ((dict, type(None)), "an object of whole numbers"),
    "verified": ((dict, type(None)), "an object"),
    "local": ((bool,), "true or false"),
    "uploads": ((list,), "a list of objects"),
    "parts": ((list,), "a list"),
}


def _has_type(value: object, types: tuple[type, ...], name: str) -> bool:
    # JSON true/false are Python bools, and bool is an int: a size of `true` is not a size.
    if isinstance(value, bool) and bool not in types:
        return False
    if not isinstance(value, types):
        return False
    if name == "tables" and isinstance(value, dict):
        return all(isinstance(count, int) and not isinstance(count, bool) for count in value.values())
    if name == "uploads" and isinstance(value, list):
        return all(isinstance(upload, dict) for upload in value)
    return True


def _json_type(value: object) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
