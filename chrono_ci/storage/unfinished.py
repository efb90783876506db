"""Multipart uploads this process could not abort (the server was down), kept on record in the backup folder so
that a later run aborts them: only this record makes such an upload safely ours to abort, since by age alone it
could be another job's upload still in progress. Parts are billed until aborted."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from chrono_ci.errors import ChronoError
from chrono_ci.storage.base import Storage

UNFINISHED_NAME = ".chrono-unfinished-uploads.json"


def remember_unfinished(folder: Path, storage: Storage) -> None:
    """Record multipart uploads that could not be aborted (the server was down), so a later run aborts them.

    Only this record makes such an upload safely ours to abort: by age alone it could be another job's upload
    still in progress.
    """
    pending: list[tuple[str, str]] = getattr(storage, "unfinished_uploads", list)()
    if not pending:
        return
    path = folder / UNFINISHED_NAME
    records = _read_unfinished(path)
    records += [{"url": storage.url, "key": key, "upload_id": upload_id} for key, upload_id in pending]
    _write_private(path, json.dumps(records, indent=2))


def abort_recorded_uploads(folder: Path, storage: Storage, warn: Callable[[str], None]) -> None:
    """Abort the unfinished uploads an earlier run recorded for this store."""
    path = folder / UNFINISHED_NAME
    records = _read_unfinished(path)
    abort = getattr(storage, "abort_upload", None)
    if not records or abort is None:
        return
    left = []
    for record in records:
        if record.get("url") != storage.url:
            left.append(record)
            continue
        try:
            abort(record["key"], record["upload_id"])
        except ChronoError as error:
            warn(f"an unfinished upload of {record['key']} could not be aborted yet: {error.message}")
            left.append(record)
    if left:
        _write_private(path, json.dumps(left, indent=2))
    else:
        path.unlink(missing_ok=True)


def _read_unfinished(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return (
        [r for r in data if isinstance(r, dict) and {"url", "key", "upload_id"} <= set(r)]
        if isinstance(data, list)
        else []
    )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
