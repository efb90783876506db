"""Where a backup goes besides (or instead of) the local folder: S3 and GitHub artifacts, fed from the same
stream as it is dumped.

One stream, several stores: the first store reads the archive stream itself; every other store reads a copy
of each chunk from a small bounded queue in its own thread (so memory stays constant, and the slowest store sets
the pace instead of a temp file). If the dump fails, every store receives the failure and discards what it had.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.provenance import Vetted
from chrono_ci.archive.signing import Record, SigningKey
from chrono_ci.errors import ChronoError, StorageError
from chrono_ci.report.console import Reporter
from chrono_ci.retention.policy import Decision, RetentionPolicy, plan_retention
from chrono_ci.storage.base import ObjectInfo, Seal, Storage

QUEUE_CHUNKS = 8  # at most this many 1 MiB chunks wait for a slow store


@dataclass
class Destination:
    target: str  # "local" | "s3" | "artifact"
    storage: Storage
    outcome: dict[str, Any] = field(default_factory=dict)
    info: ObjectInfo | None = None
    error: ChronoError | None = None


class UpstreamFailed(Exception):
    """What a secondary store sees when the primary stream failed: it must discard its upload."""


class _Branch:
    """The readable side of one secondary store: chunks arrive through a bounded queue."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | BaseException] = queue.Queue(QUEUE_CHUNKS)
        self.finished = threading.Event()  # the consumer stopped (done or failed): stop feeding it

    def read(self, size: int = -1) -> bytes:
        item = self.chunks.get()
        if isinstance(item, BaseException):
            raise UpstreamFailed(str(item)) from item
        return item

    def offer(self, item: bytes | BaseException) -> None:
        while not self.finished.is_set():
            with contextlib.suppress(queue.Full):
                self.chunks.put(item, timeout=0.2)
                return


class _Tee:
    """Wraps the archive stream: every chunk the primary store reads is also offered to every branch."""

    def __init__(self, source: BinaryIO, branches: list[_Branch]) -> None:
        self.source = source
        self.branches = branches

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.source.read(size)
        except BaseException as exc:
            for branch in self.branches:
                branch.offer(exc)
            raise
        for branch in self.branches:
            branch.offer(data)
        return data


def put_everywhere(
    destinations: list[Destination],
    key: str,
    stream: BinaryIO,
    metadata: Mapping[str, str],
    seal: Seal | None = None,
) -> None:
    """Store `stream` under `key` in every destination; each records its info or its error.

    The first destination is primary: if it fails, the exception propagates (after the others are told).
    A secondary failing is recorded in its Destination and does not stop the others.
    """
    primary, secondaries = destinations[0], destinations[1:]
    branches = [_Branch() for _ in secondaries]
    threads = []
    for destination, branch in zip(secondaries, branches, strict=True):
        thread = threading.Thread(
            target=_consume, args=(destination, branch, key, metadata, seal), name=f"upload-{destination.target}"
        )
        thread.start()
        threads.append(thread)
    try:
        primary.info = primary.storage.put(key, _Tee(stream, branches), metadata, seal)  # type: ignore[arg-type]
    except BaseException as exc:
        for branch in branches:
            branch.offer(exc)
        raise
    finally:
        for thread in threads:
            thread.join()


def _consume(
    destination: Destination, branch: _Branch, key: str, metadata: Mapping[str, str], seal: Seal | None
) -> None:
    try:
        destination.info = destination.storage.put(key, branch, metadata, seal)  # type: ignore[arg-type]
    except UpstreamFailed:
        pass  # the primary's error is the one reported
    except ChronoError as error:
        destination.error = error
    except Exception as exc:  # a backend bug must not take the other stores down with it
        destination.error = StorageError(f"{destination.target} upload failed: {type(exc).__name__}: {exc}")
    finally:
        branch.finished.set()
        # Unblock the feeder if it is waiting on a full queue.
        with contextlib.suppress(queue.Empty):
            while True:
                branch.chunks.get_nowait()


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


# A multipart upload this old under our prefix, with an archive's name, is a killed run's: no backup's upload
# lasts that long without finishing (parts of several GB go up in minutes), and a younger one may be a run going.
ABANDONED_UPLOAD_AGE = timedelta(hours=1)


def abort_abandoned_uploads(storage: Storage, reporter: Reporter, now: datetime | None = None) -> None:
    """Abort the multipart uploads killed runs left under our prefix, whether a run recorded them or not: our
    archive names, started more than ABANDONED_UPLOAD_AGE ago. Parts are billed until aborted."""
    sweep = getattr(storage, "abort_stale_uploads", None)
    if sweep is None:
        return
    try:
        aborted: list[str] = sweep(ABANDONED_UPLOAD_AGE, named=lambda key: ArchiveName.parse(key) is not None, now=now)
    except ChronoError as error:
        reporter.warn(f"unfinished uploads in {storage.url} could not be listed or aborted: {error.message}")
        return
    if aborted:
        reporter.info(f"aborted {len(aborted)} unfinished upload(s) an interrupted run left: {', '.join(aborted)}")


def apply_remote_retention(
    vetted: list[Vetted],
    storage: Storage,
    policy: RetentionPolicy,
    now: datetime,
    kind: str,
    source: str,
    just_made: str,
    *,
    dry_run: bool = False,
    warn: Callable[[str], None] = lambda _message: None,
) -> tuple[list[Decision], list[Decision]]:
    """Retention on one remote group (kind, source) of the trusted objects in `vetted`. Objects under object
    lock are reported as kept."""
    from chrono_ci.storage.s3.store import ObjectLocked

    refs = [v.ref for v in vetted if v.ref is not None and v.ref.kind == kind and v.ref.database == source]
    plan = plan_retention(refs, policy, now, just_made=[just_made])
    removed: list[Decision] = []
    kept = list(plan.keep)
    for decision in plan.remove:
        if dry_run:
            removed.append(decision)
            continue
        try:
            storage.delete(decision.archive.key)
        except ObjectLocked:
            kept.append(Decision(decision.archive, True, ("protected by object lock",)))
            continue
        except ChronoError as error:
            warn(f"could not remove {decision.archive.key} from {storage.url}: {error.message}")
            continue
        removed.append(decision)
    return kept, removed
