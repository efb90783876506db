"""What only S3 has: URLs and settings, credentials, outages mid-upload, object lock, GitHub OIDC.

Everything runs against a real SeaweedFS; the only fakes are GitHub's token endpoint and AWS STS, two small
loopback HTTP servers, because neither exists off GitHub and AWS.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import socket
import threading
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ResponseStreamingError
from botocore.stub import Stubber

import chrono_ci.storage.s3.upload as s3_module
from chrono_ci.errors import ConfigError, ObjectNotFound, StorageError
from chrono_ci.storage import open_storage
from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.storage.local import LocalStorage
from chrono_ci.storage.s3.config import MIN_PART_SIZE, S3Config, parse_s3_url
from chrono_ci.storage.s3.errors import ObjectLocked
from chrono_ci.storage.s3.store import S3Storage
from tests.fixtures.seaweedfs_server import SeaweedFS

KEYS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}


def make_storage(server: SeaweedFS, bucket: str, prefix: str = "backups/prod", **overrides: Any) -> S3Storage:
    settings: dict[str, Any] = {"part_size": MIN_PART_SIZE, "retry_deadline": 10, **overrides}
    config = S3Config(bucket=bucket, prefix=prefix, endpoint_url=server.endpoint_url, region=server.region, **settings)
    return S3Storage(config, session=server.session())


def header(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


class Intercepted(Exception):
    """Raised from a before-send hook: the request was signed and seen, and goes no further."""


def signed_headers(storage: S3Storage) -> dict[str, str]:
    """The headers of the next request the storage's S3 client signs, without sending it."""
    seen: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        seen.update({name: header(value) for name, value in request.headers.items()})
        raise Intercepted

    storage.client.meta.events.register_first("before-send.s3", capture)
    try:
        with pytest.raises(Intercepted):
            storage.list()
    finally:
        storage.client.meta.events.unregister("before-send.s3", capture)
    return seen


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------------------------------ URLs, settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://my-bucket", ("my-bucket", "")),
        ("s3://my-bucket/", ("my-bucket", "")),
        ("s3://my.bucket-2/backups/prod/", ("my.bucket-2", "backups/prod")),
        ("S3://abc/x", ("abc", "x")),
    ],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("https://bucket/x", "does not start with s3://"),
        ("s3:/bucket", "does not start with s3://"),
        ("s3://bk", "3 to 63 characters"),
        ("s3://" + "a" * 64, "3 to 63 characters"),
        ("s3://My-Bucket", "lowercase"),
        ("s3://under_score", "lowercase"),
        ("s3://-dash-first", "starting and ending"),
        ("s3://a..b", "adjacent"),
        ("s3://192.168.1.10", "IP address"),
        ("s3://xn--bucket", "reserves"),
        ("s3://bucket/a//b", "segment"),
        ("s3://bucket/a/../b", "segment"),
        ("s3://bucket/x?versionId=1", "query"),
    ],
)
def test_parse_s3_url_refuses(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_s3_url(url)
    assert complaint in raised.value.message
    assert raised.value.hint


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIDEXAMPLE:hunter2secret@bucket/prefix",
        # A / in the secret ends the bucket early: "AKIDEXAMPLE:hunter2" would be checked as the bucket name.
        "s3://AKIDEXAMPLE:hunter2/secret@bucket/prefix",
        "s3://AKIDEXAMPLE:hunter2#secret@bucket/prefix",
        "s3://AKIDEXAMPLE:hunter2?secret@bucket/prefix",
        "s3://bucket/pre//hunter2secret",
        "s3://Hunter2Secret/prefix",
    ],
)
def test_parse_s3_url_never_repeats_any_part_of_the_url(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_s3_url(url)
    said = raised.value.message + raised.value.hint
    for piece in ("hunter2", "Hunter2", "secret", "AKIDEXAMPLE", "bucket/", "pre/"):
        assert piece not in said


def test_an_endpoint_url_is_never_repeated() -> None:
    with pytest.raises(ConfigError) as raised:
        S3Storage.from_env("s3://bucket/prefix", {**KEYS, "S3_ENDPOINT_URL": "user:hunter2@minio:9000"})
    assert "S3_ENDPOINT_URL" in raised.value.message and "hunter2" not in raised.value.message + raised.value.hint


@pytest.mark.parametrize(
    ("variables", "named", "value"),
    [
        ({"S3_SSE": "rot13"}, "S3_SSE", "rot13"),
        ({"S3_SSE_KMS_KEY_ID": "alias/backups"}, "S3_SSE_KMS_KEY_ID", ""),
        ({"S3_SSE": "AES256", "S3_SSE_KMS_KEY_ID": "alias/backups"}, "S3_SSE_KMS_KEY_ID", "AES256"),
        ({"S3_STORAGE_CLASS": "COLD"}, "S3_STORAGE_CLASS", "COLD"),
        ({"S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL", ""),
        ({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY", ""),
    ],
)
def test_from_env_names_the_bad_variable(variables: dict[str, str], named: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        S3Storage.from_env("s3://bucket/prefix", {**KEYS, **variables})
    assert named in raised.value.message
    assert value in raised.value.message
    assert raised.value.hint


def test_from_env_reads_the_s3_variables_and_url_shows_no_secret() -> None:
    environ = {
        **KEYS,
        "S3_ENDPOINT_URL": "https://account.r2.cloudflarestorage.com/",
        "S3_REGION": "auto",
        "S3_SSE": "aws:kms",
        "S3_SSE_KMS_KEY_ID": "alias/backups",
        "S3_STORAGE_CLASS": "standard_ia",
    }
    storage = S3Storage.from_env("s3://bucket/nightly/", environ)
    assert storage.config == S3Config(
        bucket="bucket",
        prefix="nightly",
        endpoint_url="https://account.r2.cloudflarestorage.com",
        region="auto",
        sse="aws:kms",
        sse_kms_key_id="alias/backups",
        storage_class="STANDARD_IA",
    )
    assert storage.url == "s3://bucket/nightly"
    assert S3Storage.from_env("s3://bucket", KEYS).url == "s3://bucket"


def test_config_refuses_a_part_size_s3_would_refuse() -> None:
    with pytest.raises(ConfigError, match="part_size"):
        S3Config(bucket="bucket", part_size=MIN_PART_SIZE - 1)


def test_open_storage_chooses_the_backend_from_the_url(tmp_path: Any) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    local = open_storage(f"file://{tmp_path}/with%20space")
    assert isinstance(local, LocalStorage)
    assert str(local.root) == f"{tmp_path}/with space"
    s3 = open_storage("s3://bucket/p", {**KEYS, "S3_REGION": "eu-west-1"})
    assert isinstance(s3, S3Storage)
    assert s3.url == "s3://bucket/p"
    for url in ("ftp://host/backups", "s3:/bucket", "file://otherhost/x"):
        with pytest.raises(ConfigError) as raised:
            open_storage(url, KEYS)
        assert raised.value.hint
    with pytest.raises(ConfigError) as unknown:
        open_storage("ftp://host/backups", KEYS)
    assert "ftp" not in unknown.value.message and "scheme" in unknown.value.message
    assert "s3://" in unknown.value.hint and "artifact://" in unknown.value.hint


# ---------------------------------------------------------------------------------- errors from the server


def test_wrong_secret_key_is_a_clear_error_without_the_secret(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    wrong_secret = "wrong-" + secrets.token_urlsafe(16)
    environ = {
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": wrong_secret,
        "S3_ENDPOINT_URL": seaweedfs.endpoint_url,
    }
    storage = S3Storage.from_env(f"s3://{s3_bucket}/x", environ)
    for attempt in (storage.list, lambda: storage.put("a.bin", io.BytesIO(b"data"))):
        with pytest.raises(StorageError) as raised:
            attempt()
        error = raised.value
        assert not isinstance(error, ObjectNotFound)
        assert "SignatureDoesNotMatch" in error.message
        assert "AWS_SECRET_ACCESS_KEY" in error.hint and "AWS_ACCESS_KEY_ID" in error.hint
        assert wrong_secret not in str(error) + error.hint


def test_unknown_access_key(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    storage = S3Storage.from_env(
        f"s3://{s3_bucket}",
        {"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN", "AWS_SECRET_ACCESS_KEY": "x", "S3_ENDPOINT_URL": seaweedfs.endpoint_url},
    )
    with pytest.raises(StorageError, match="InvalidAccessKeyId") as raised:
        storage.stat("a.bin")
    assert "AWS_ACCESS_KEY_ID" in raised.value.hint


def test_unknown_bucket_is_named(seaweedfs: SeaweedFS) -> None:
    storage = make_storage(seaweedfs, "no-such-bucket-here")
    for attempt in (
        storage.list,
        lambda: storage.stat("a.bin"),
        lambda: storage.open("a.bin"),
        lambda: storage.put("a.bin", io.BytesIO(b"data")),
    ):
        with pytest.raises(StorageError) as raised:
            attempt()
        assert not isinstance(raised.value, ObjectNotFound)
        assert "no-such-bucket-here" in raised.value.message


def test_unreachable_endpoint_says_which(tmp_path: Any) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    config = S3Config(bucket="bucket", endpoint_url=endpoint, retry_deadline=0, connect_timeout=1, read_timeout=1)
    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="us-east-1")
    storage = S3Storage(config, session=session)
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert time.monotonic() - started < 15
    assert endpoint in raised.value.message
    assert "S3_ENDPOINT_URL" in raised.value.hint


def test_an_endpoint_that_never_answered_fails_fast_whatever_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in S3_ENDPOINT_URL is not an outage: with the default deadline of minutes, the check before the dump
    still gives up after the first-contact deadline (shortened here from 20 s), and says what to check."""
    from chrono_ci.storage.s3 import retry

    monkeypatch.setattr(retry, "FIRST_CONTACT_DEADLINE", 3.0)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    config = S3Config(bucket="bucket", endpoint_url=endpoint, retry_deadline=300, connect_timeout=1, read_timeout=1)
    session = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x", region_name="us-east-1")
    warnings: list[str] = []
    storage = S3Storage(config, session=session, warn=warnings.append)
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert time.monotonic() - started < 30
    assert warnings, "it retried at least once before giving up"
    assert f"{endpoint} never answered" in raised.value.message
    assert "S3_ENDPOINT_URL" in raised.value.hint and "S3_RETRY_DEADLINE" in raised.value.hint


def test_metadata_s3_cannot_keep_is_refused(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    storage = make_storage(seaweedfs, s3_bucket)
    with pytest.raises(StorageError, match="metadata"):
        storage.put("a.bin", io.BytesIO(b"x"), {"database": "caf\u00e9"})


# ---------------------------------------------------------------------------------- layout and multipart


def test_keys_live_under_the_prefix_and_list_sees_only_those(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    client = seaweedfs.client()
    client.put_object(Bucket=s3_bucket, Key="someone-else.bin", Body=b"not ours")
    client.put_object(Bucket=s3_bucket, Key="backups/prod-old/x.bin", Body=b"not ours either")
    client.put_object(Bucket=s3_bucket, Key="backups/prod/folder/", Body=b"")
    storage = make_storage(seaweedfs, s3_bucket, prefix="/backups/prod/")
    storage.put("db.dump", io.BytesIO(b"ours"))
    assert client.get_object(Bucket=s3_bucket, Key="backups/prod/db.dump")["Body"].read() == b"ours"
    assert [entry.key for entry in storage.list()] == ["db.dump"]


@pytest.mark.parametrize("tags", [True, False], ids=["record-in-tags", "checksum-copy"])
def test_multipart_upload_keeps_checksum_encryption_and_class(seaweedfs: SeaweedFS, s3_bucket: str, tags: bool) -> None:
    storage = make_storage(seaweedfs, s3_bucket, sse="AES256", storage_class="STANDARD_IA")
    if not tags:
        storage = with_keys(storage, no_tags_keys(seaweedfs))
    data = secrets.token_bytes(2 * MIN_PART_SIZE + 1)
    info = storage.put("big.bin", io.BytesIO(data), {"database": "app"})
    client = seaweedfs.client()
    head = client.head_object(Bucket=s3_bucket, Key="backups/prod/big.bin")
    tagged = client.get_object_tagging(Bucket=s3_bucket, Key="backups/prod/big.bin")["TagSet"]
    assert head["ETag"].endswith('-3"')  # three parts: proof the multipart path ran
    sha256 = hashlib.sha256(data).hexdigest()
    if tags:
        assert head["Metadata"] == {"database": "app"} and tagged == [{"Key": "sha256", "Value": sha256}]
    else:
        assert head["Metadata"] == {"database": "app", "sha256": sha256} and tagged == []
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert info.metadata == {"database": "app", "sha256": sha256}
    assert storage.stat("big.bin").metadata == info.metadata


def no_tags_keys(seaweedfs: SeaweedFS) -> tuple[str, str]:
    """Credentials that may do everything a backup does except object tags: the checksum copy's path."""
    return seaweedfs.limited_user(f"no-tags-{secrets.token_hex(4)}", NO_TAGS_ACTIONS)


NO_TAGS_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:AbortMultipartUpload",
]


def with_keys(storage: S3Storage, keys: tuple[str, str]) -> S3Storage:
    session = boto3.Session(aws_access_key_id=keys[0], aws_secret_access_key=keys[1], region_name="us-east-1")
    return S3Storage(storage.config, session=session)


def test_versioned_bucket_keeps_one_version_per_multipart_put(seaweedfs: SeaweedFS) -> None:
    # The checksum copy makes a second version; the first, identical but for its metadata, is removed.
    client = seaweedfs.client()
    bucket = f"chrono-versioned-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    storage = with_keys(make_storage(seaweedfs, bucket), no_tags_keys(seaweedfs))
    data = secrets.token_bytes(MIN_PART_SIZE + 1)
    storage.put("versioned.bin", io.BytesIO(data))
    versions = client.list_object_versions(Bucket=bucket, Prefix="backups/prod/").get("Versions", [])
    assert len(versions) == 1
    assert storage.stat("versioned.bin").metadata["sha256"] == hashlib.sha256(data).hexdigest()


def test_versioned_bucket_with_tags_makes_one_version(seaweedfs: SeaweedFS) -> None:
    # Tags are set on the version the upload made: no copy, no second version to clean up.
    client = seaweedfs.client()
    bucket = f"chrono-versioned-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    storage = make_storage(seaweedfs, bucket)
    data = secrets.token_bytes(MIN_PART_SIZE + 1)
    storage.put("versioned.bin", io.BytesIO(data))
    versions = client.list_object_versions(Bucket=bucket, Prefix="backups/prod/").get("Versions", [])
    assert len(versions) == 1
    assert storage.stat("versioned.bin").metadata["sha256"] == hashlib.sha256(data).hexdigest()


def test_checksum_copy_of_objects_above_the_copy_limit(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CopyObject stops at 5 GiB; lowering the limit sends a small object down the ranged-copy path.
    monkeypatch.setattr(s3_module, "MAX_COPY_OBJECT_SIZE", MIN_PART_SIZE)
    monkeypatch.setattr(s3_module, "COPY_PART_SIZE", MIN_PART_SIZE)
    storage = with_keys(make_storage(seaweedfs, s3_bucket), no_tags_keys(seaweedfs))
    data = secrets.token_bytes(2 * MIN_PART_SIZE + 7)
    info = storage.put("huge.bin", io.BytesIO(data))
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    with storage.open("huge.bin") as stream:
        assert stream.read() == data
    assert seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_open_resumes_a_read_that_broke_off(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    storage = make_storage(seaweedfs, s3_bucket)
    data = secrets.token_bytes(3 * CHUNK_SIZE + 5)
    storage.put("resumed.bin", io.BytesIO(data))
    ranges: list[str] = []
    storage.client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: ranges.append(header(request.headers.get("Range")))
    )

    class BreaksOnce:
        def __init__(self, body: Any) -> None:
            self.body, self.reads, self.delivered = body, 0, 0

        def read(self, amount: int) -> bytes:
            self.reads += 1
            if self.reads == 2:
                raise ResponseStreamingError(error="connection reset by peer")
            data = bytes(self.body.read(amount))
            self.delivered += len(data)
            return data

        def close(self) -> None:
            self.body.close()

    stream = storage.open("resumed.bin")
    reader = stream.raw  # type: ignore[attr-defined]
    flaky = reader._body = BreaksOnce(reader._body)
    with stream:
        assert stream.read() == data
    assert 0 < flaky.delivered < len(data)
    assert ranges == ["", f"bytes={flaky.delivered}-"]


class ZeroSource(io.RawIOBase):
    """`total` bytes made up on the fly: the test itself holds none of them."""

    def __init__(self, total: int) -> None:
        self.left = total

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        amount = min(CHUNK_SIZE if size < 0 else size, self.left)
        self.left -= amount
        return b"\x00" * amount


def test_put_holds_at_most_two_parts_in_memory(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    storage = make_storage(seaweedfs, s3_bucket)
    total = 12 * MIN_PART_SIZE
    tracemalloc.start()
    try:
        info = storage.put("streamed.bin", ZeroSource(total))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == total
    assert peak < 3 * MIN_PART_SIZE, f"peak {peak / MIN_PART_SIZE:.1f} parts for a {total // MIN_PART_SIZE}-part put"


# ------------------------------------------------------------------------------------------- object lock


def test_locked_object_is_not_deleted_and_says_why(seaweedfs: SeaweedFS) -> None:
    client = seaweedfs.client()
    bucket = f"chrono-lock-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    storage = make_storage(seaweedfs, bucket)
    storage.put("kept.bin", io.BytesIO(b"immutable"))
    client.put_object_retention(
        Bucket=bucket,
        Key="backups/prod/kept.bin",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=1)},
    )
    with pytest.raises(ObjectLocked) as raised:
        storage.delete("kept.bin")
    assert "GOVERNANCE" in raised.value.message
    # Not hidden behind a delete marker either: it stays listed and readable.
    assert [entry.key for entry in storage.list()] == ["kept.bin"]
    with storage.open("kept.bin") as stream:
        assert stream.read() == b"immutable"


def test_access_denied_for_object_lock_on_delete_is_object_locked() -> None:
    # Some servers refuse the delete outright instead of showing the lock on HEAD.
    storage = S3Storage.from_env("s3://bucket/p", KEYS)
    with Stubber(storage.client) as stub:
        stub.add_response("head_object", {"ContentLength": 1, "LastModified": datetime.now(UTC), "Metadata": {}})
        stub.add_client_error(
            "delete_object",
            service_error_code="AccessDenied",
            service_message="Access Denied because object protected by object lock.",
            http_status_code=403,
        )
        with pytest.raises(ObjectLocked):
            storage.delete("a.bin")


# ----------------------------------------------------------------------------------- outage, leftovers


class SlowSource(io.RawIOBase):
    """A dump trickling out 1 MiB at a time; calls `at_byte` once when it has produced that many bytes."""

    def __init__(self, total: int, delay: float, at_byte: int, action: Callable[[], None]) -> None:
        self.total, self.delay, self.sent = total, delay, 0
        self.at_byte, self.action = at_byte, action

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        amount = min(CHUNK_SIZE, self.total - self.sent)
        if amount <= 0:
            return b""
        self.sent += amount
        if self.sent - amount < self.at_byte <= self.sent:
            self.action()
        time.sleep(self.delay)
        return b"\x00" * amount


def test_server_killed_mid_upload(
    seaweedfs: SeaweedFS, s3_bucket: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    storage = make_storage(seaweedfs, s3_bucket, retry_deadline=3, connect_timeout=1, read_timeout=3)
    killed_at: list[float] = []

    def outage() -> None:
        seaweedfs.kill()
        killed_at.append(time.monotonic())

    # The first part (5 MiB) is on the server when S3 dies at 7 MiB; 100 MiB would take 10 s to read.
    source = SlowSource(total=100 * CHUNK_SIZE, delay=0.1, at_byte=7 * CHUNK_SIZE, action=outage)
    try:
        with pytest.raises(StorageError) as raised:
            storage.put("outage.bin", source)  # type: ignore[arg-type]
        failed_after = time.monotonic() - killed_at[0]
    finally:
        seaweedfs.restart()
    error = raised.value
    assert failed_after < 20
    assert source.sent < source.total  # it stopped reading the dump once nothing could store it
    assert seaweedfs.endpoint_url in error.message
    assert "Traceback" not in str(error) + error.hint + capfd.readouterr().err

    client = seaweedfs.client()
    orphans = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    # The abort was tried while S3 was down, and could not get through.
    assert "could not abort the unfinished upload of backups/prod/outage.bin" in caplog.text
    assert [upload["Key"] for upload in orphans] == ["backups/prod/outage.bin"]
    assert storage.abort_stale_uploads() == ["outage.bin"]
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    with pytest.raises(ObjectNotFound):
        storage.stat("outage.bin")


def test_abort_stale_uploads_only_touches_old_uploads_under_the_prefix(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    client = seaweedfs.client()
    ours = client.create_multipart_upload(Bucket=s3_bucket, Key="backups/prod/left-by-a-killed-run.bin")
    client.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/not-ours.bin")
    storage = make_storage(seaweedfs, s3_bucket)
    assert storage.abort_stale_uploads() == []  # a fresh upload may belong to a run still going
    assert storage.abort_stale_uploads(older_than=timedelta(0)) == ["left-by-a-killed-run.bin"]
    left = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [upload["Key"] for upload in left] == ["elsewhere/not-ours.bin"]
    assert ours["UploadId"] not in {upload["UploadId"] for upload in left}


# -------------------------------------------------------------------------------------------- GitHub OIDC


@dataclass
class Recorded:
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def loopback_server(respond: Callable[[BaseHTTPRequestHandler, bytes], tuple[int, str, bytes]]) -> Iterator[str]:
    """A one-purpose HTTP server on 127.0.0.1; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

        def _answer(self, body: bytes) -> None:
            status, content_type, payload = respond(self, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9yZy9yZXBvOnJlZjpyZWZzL2hlYWRzL21haW4ifQ.c2lnbmF0dXJl"
STS_KEY_ID, STS_SECRET, STS_TOKEN = "ASIAFAKEOIDC0000", "sts-secret-" + "s" * 20, "sts-session-token-" + "t" * 20
ROLE_ARN = "arn:aws:iam::123456789012:role/chrono-backup"


def sts_response(expiration: datetime) -> bytes:
    return f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>repo:org/repo:ref:refs/heads/main</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/chrono-backup/GitHubActions</Arn>
      <AssumedRoleId>AROAFAKE:GitHubActions</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{STS_KEY_ID}</AccessKeyId>
      <SecretAccessKey>{STS_SECRET}</SecretAccessKey>
      <SessionToken>{STS_TOKEN}</SessionToken>
      <Expiration>{expiration:%Y-%m-%dT%H:%M:%SZ}</Expiration>
    </Credentials>
    <Provider>token.actions.githubusercontent.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>fake-request</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>""".encode()


def test_role_without_an_oidc_token_asks_for_id_token_permission() -> None:
    with pytest.raises(ConfigError) as raised:
        S3Storage.from_env("s3://bucket", {"AWS_ROLE_ARN": ROLE_ARN})
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in raised.value.message
    assert "id-token: write" in raised.value.hint
    assert "fork" in raised.value.hint


def test_keys_in_the_environment_win_over_a_role() -> None:
    # No token endpoint is configured: reaching for one would raise.
    storage = S3Storage.from_env("s3://bucket", {**KEYS, "AWS_ROLE_ARN": ROLE_ARN})
    assert f"Credential={KEYS['AWS_ACCESS_KEY_ID']}/" in signed_headers(storage)["Authorization"]


def test_github_oidc_assumes_the_role_and_s3_signs_with_its_keys(
    seaweedfs: SeaweedFS, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token_requests: list[tuple[str, str | None]] = []
    sts_requests: list[tuple[dict[str, list[str]], str | None]] = []

    def token_endpoint(handler: BaseHTTPRequestHandler, _: bytes) -> tuple[int, str, bytes]:
        token_requests.append((handler.path, handler.headers.get("Authorization")))
        return 200, "application/json", json.dumps({"count": 1, "value": JWT}).encode()

    def sts(handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str, bytes]:
        sts_requests.append((urllib.parse.parse_qs(body.decode()), handler.headers.get("Authorization")))
        return 200, "text/xml", sts_response(datetime.now(UTC) + timedelta(hours=1))

    with loopback_server(token_endpoint) as token_url, loopback_server(sts) as sts_url:
        environ = {
            "AWS_ROLE_ARN": ROLE_ARN,
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{token_url}/_apis/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-request-token",
            "AWS_ENDPOINT_URL_STS": sts_url,
            "S3_ENDPOINT_URL": seaweedfs.endpoint_url,
            "GITHUB_ACTIONS": "true",
        }
        storage = S3Storage.from_env(f"s3://{s3_bucket}/oidc", environ)

    [(path, authorization)] = token_requests
    assert path == "/_apis/token?api-version=2.0&audience=sts.amazonaws.com"
    assert authorization == "Bearer runner-request-token"
    [(form, sts_authorization)] = sts_requests
    assert sts_authorization is None  # unsigned: the JWT is the proof
    assert form["Action"] == ["AssumeRoleWithWebIdentity"]
    assert form["RoleArn"] == [ROLE_ARN]
    assert form["WebIdentityToken"] == [JWT]
    assert form["RoleSessionName"] == ["GitHubActions"]
    masked = capsys.readouterr().out
    assert f"::add-mask::{JWT}" in masked and f"::add-mask::{STS_SECRET}" in masked

    # What S3 receives is signed with the role's keys, and SeaweedFS, knowing nothing of them, refuses it.
    headers = signed_headers(storage)
    assert f"Credential={STS_KEY_ID}/" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == STS_TOKEN
    with pytest.raises(StorageError) as raised:
        storage.list()
    assert "AWS_ROLE_ARN" in raised.value.hint
    assert STS_SECRET not in str(raised.value) + raised.value.hint


def test_token_endpoint_refusal_is_a_storage_error_without_secrets() -> None:
    def refuse(handler: BaseHTTPRequestHandler, _: bytes) -> tuple[int, str, bytes]:
        return 401, "application/json", b'{"message": "unauthorized"}'

    with loopback_server(refuse) as token_url:
        environ = {
            "AWS_ROLE_ARN": ROLE_ARN,
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{token_url}/_apis/token?sig=query-secret",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-request-token",
        }
        with pytest.raises(StorageError) as raised:
            S3Storage.from_env("s3://bucket", environ)
    shown = str(raised.value) + raised.value.hint
    assert "401" in shown
    assert "runner-request-token" not in shown and "query-secret" not in shown
