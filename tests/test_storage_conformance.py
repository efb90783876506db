"""One suite, every backend: what the storage protocol promises, checked the same way on each.

A backend earns its place by passing this module unchanged. Backend-specific checks appear only where the
protocol cannot see the thing being checked (S3's unfinished multipart uploads).
"""

from __future__ import annotations

import hashlib
import io
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from chrono_ci.storage import ObjectInfo, ObjectNotFound, Storage
from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.storage.local import LocalStorage
from chrono_ci.storage.s3.config import MIN_PART_SIZE, S3Config
from chrono_ci.storage.s3.store import S3Storage
from tests.fixtures.seaweedfs_server import SeaweedFS

# S3's smallest part, so that a modest object already takes the multipart path.
PART_SIZE = MIN_PART_SIZE


class SourceFailed(Exception):
    """What a dump that dies midway raises from read()."""


class FailingSource(io.RawIOBase):
    """Yields `good` bytes, then raises the given exception: a pg_dump that crashed, a cancelled job."""

    def __init__(self, good: bytes, error: BaseException) -> None:
        self._data = io.BytesIO(good)
        self.error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._data.read(size)
        if not data:
            raise self.error
        return data


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def read_all(storage: Storage, key: str) -> bytes:
    with storage.open(key) as stream:
        chunks = []
        while chunk := stream.read(CHUNK_SIZE):
            chunks.append(chunk)
    return b"".join(chunks)


def unfinished_uploads(storage: Storage) -> list[str]:
    if not isinstance(storage, S3Storage):
        return []
    response = storage.client.list_multipart_uploads(Bucket=storage.config.bucket)
    return [upload["Key"] for upload in response.get("Uploads", [])]


@pytest.fixture(params=["local", "s3", "artifact"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "b")
    elif request.param == "s3":
        server: SeaweedFS = request.getfixturevalue("seaweedfs")
        bucket: str = request.getfixturevalue("s3_bucket")
        config = S3Config(
            bucket=bucket,
            prefix=f"conformance/{secrets.token_hex(3)}",
            endpoint_url=server.endpoint_url,
            region=server.region,
            part_size=PART_SIZE,
            retry_deadline=10,
        )
        yield S3Storage(config, session=server.session())
    else:
        yield request.getfixturevalue("artifact_storage")


@pytest.mark.parametrize(
    "size",
    [1, CHUNK_SIZE + 1, 2 * PART_SIZE + 12_345],
    ids=["one-byte", "over-a-chunk", "several-parts"],
)
def test_put_stat_open_round_trip(storage: Storage, size: int) -> None:
    data = payload(size)
    info = storage.put("archive.bin", io.BytesIO(data))
    assert info.key == "archive.bin"
    assert info.size == size
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    stat = storage.stat("archive.bin")
    assert (stat.key, stat.size) == ("archive.bin", size)
    assert stat.modified.tzinfo is not None
    assert read_all(storage, "archive.bin") == data


def test_put_returns_the_callers_metadata_and_its_own_sha256(storage: Storage) -> None:
    data = payload(1000)
    info = storage.put("with-metadata.bin", io.BytesIO(data), {"database": "app", "sha256": "forged"})
    assert info.metadata["database"] == "app"
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()


def test_empty_object(storage: Storage) -> None:
    info = storage.put("empty.bin", io.BytesIO(b""))
    assert info.size == 0
    assert info.metadata["sha256"] == hashlib.sha256(b"").hexdigest()
    assert storage.stat("empty.bin").size == 0
    assert read_all(storage, "empty.bin") == b""


def test_open_reads_in_small_pieces(storage: Storage) -> None:
    data = payload(CHUNK_SIZE + 10, seed=3)
    storage.put("pieces.bin", io.BytesIO(data))
    with storage.open("pieces.bin") as stream:
        head = stream.read(10)
        rest = stream.read()
    assert head + rest == data


def test_overwrite_replaces_the_object(storage: Storage) -> None:
    storage.put("same-name.bin", io.BytesIO(b"first version"))
    second = payload(PART_SIZE + 1, seed=1)
    info = storage.put("same-name.bin", io.BytesIO(second))
    assert info.size == len(second)
    assert storage.stat("same-name.bin").size == len(second)
    assert read_all(storage, "same-name.bin") == second
    assert [entry.key for entry in storage.list()] == ["same-name.bin"]


def test_list_with_and_without_prefix(storage: Storage) -> None:
    assert storage.list() == []
    sizes = {"alpha-1.bin": 1, "alpha-2.bin": 22, "beta-1.bin": 333}
    for key, size in sizes.items():
        storage.put(key, io.BytesIO(payload(size)))

    def by_key(entries: list[ObjectInfo]) -> dict[str, int]:
        return {entry.key: entry.size for entry in entries}

    assert by_key(storage.list()) == sizes
    assert by_key(storage.list("alpha-")) == {"alpha-1.bin": 1, "alpha-2.bin": 22}
    assert by_key(storage.list("beta-1.bin")) == {"beta-1.bin": 333}
    assert storage.list("gamma") == []
    assert all(entry.modified.tzinfo is not None for entry in storage.list())


def test_delete_then_everything_reports_not_found(storage: Storage) -> None:
    storage.put("doomed.bin", io.BytesIO(b"x" * 10))
    storage.put("kept.bin", io.BytesIO(b"y"))
    storage.delete("doomed.bin")
    with pytest.raises(ObjectNotFound):
        storage.stat("doomed.bin")
    with pytest.raises(ObjectNotFound):
        storage.open("doomed.bin")
    with pytest.raises(ObjectNotFound):
        storage.delete("doomed.bin")
    assert [entry.key for entry in storage.list()] == ["kept.bin"]


def test_missing_key_is_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.stat("never-written.bin")
    with pytest.raises(ObjectNotFound):
        storage.open("never-written.bin")
    with pytest.raises(ObjectNotFound):
        storage.delete("never-written.bin")


@pytest.mark.parametrize(
    "good_bytes",
    [0, CHUNK_SIZE // 2, PART_SIZE + PART_SIZE // 2],
    ids=["at-once", "within-first-part", "after-a-part-was-sent"],
)
def test_source_that_fails_leaves_nothing_and_its_error_propagates(storage: Storage, good_bytes: int) -> None:
    error = SourceFailed("pg_dump died")
    with pytest.raises(SourceFailed) as raised:
        storage.put("broken.bin", FailingSource(payload(good_bytes), error))  # type: ignore[arg-type]
    assert raised.value is error
    with pytest.raises(ObjectNotFound):
        storage.stat("broken.bin")
    assert storage.list() == []
    assert unfinished_uploads(storage) == []


def test_failed_overwrite_keeps_the_previous_object(storage: Storage) -> None:
    storage.put("precious.bin", io.BytesIO(b"the good backup"))
    with pytest.raises(SourceFailed):
        storage.put(
            "precious.bin",
            FailingSource(payload(PART_SIZE + 1), SourceFailed("cancelled")),  # type: ignore[arg-type]
        )
    assert read_all(storage, "precious.bin") == b"the good backup"
    assert unfinished_uploads(storage) == []
