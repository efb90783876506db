"""S3 that goes away in the middle of a multipart upload, for real: a SeaweedFS of this module's own, killed
(SIGKILL: connections refused) or hung (SIGSTOP: connections accepted, never answered), then brought back on the
same ports and data. The retry policy (chrono_ci/storage/s3/retry.py) must ride out the outage with a correct
archive and bounded memory, or stop at S3_RETRY_DEADLINE with a clear error and nothing that looks like a backup.

The server is this module's own so that a test that leaves it down harms no other test.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from chrono_ci.config.options import BY_ENV
from chrono_ci.errors import ConfigError, ExitCode, ObjectNotFound, StorageError
from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.storage.s3.config import MIN_PART_SIZE, S3Config
from chrono_ci.storage.s3.retry import MAX_WAIT, RetryPolicy, retryable_cause
from chrono_ci.storage.s3.store import S3Storage
from tests.fixtures.seaweedfs_server import INSTALL_HINT, SeaweedFS, SeaweedStartFailed, weed_binary

PART = MIN_PART_SIZE  # 5 MiB: several parts from a small archive


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    binary = weed_binary()
    if binary is None:
        pytest.fail(f"The SeaweedFS `weed` binary is missing; S3 is a core path and must be tested. {INSTALL_HINT}")
    weed = SeaweedFS(binary, tmp_path_factory.mktemp("seaweedfs-outage"), key_prefix="chrono-outage")
    try:
        weed.start()
    except SeaweedStartFailed as failure:
        pytest.fail(str(failure))
    try:
        yield weed
    finally:
        weed.resume()
        weed.stop()


@pytest.fixture
def bucket(server: SeaweedFS) -> str:
    # A test before may have left the server down or hung: every test starts with it answering.
    server.resume()
    if server.process is None:
        server.start()
    name = f"outage-{secrets.token_hex(5)}"
    server.client().create_bucket(Bucket=name)
    return name


def storage_for(server: SeaweedFS, bucket: str, warnings: list[str], **settings: Any) -> S3Storage:
    config = S3Config(
        bucket=bucket,
        prefix="backups",
        endpoint_url=server.endpoint_url,
        region=server.region,
        part_size=PART,
        **settings,
    )
    return S3Storage(config, session=server.session(), warn=warnings.append)


class DumpSource:
    """`total` bytes of a fixed pattern, 1 MiB a read, a little slowly like a dump; runs `at_byte` once when it
    has produced that many bytes. The test holds none of the bytes: `expected_sha256` recomputes them."""

    def __init__(self, total: int, at_byte: int, action: Callable[[], None], delay: float = 0.01) -> None:
        self.total, self.at_byte, self.action, self.delay = total, at_byte, action, delay
        self.sent = 0

    @staticmethod
    def chunk(index: int) -> bytes:
        return hashlib.sha256(index.to_bytes(8, "big")).digest() * (CHUNK_SIZE // 32)

    def read(self, size: int = -1) -> bytes:
        if self.sent >= self.total:
            return b""
        data = self.chunk(self.sent // CHUNK_SIZE)[: self.total - self.sent]
        self.sent += len(data)
        if self.sent - len(data) < self.at_byte <= self.sent:
            self.action()
        time.sleep(self.delay)
        return data

    def expected_sha256(self) -> str:
        digest = hashlib.sha256()
        for index in range(-(-self.total // CHUNK_SIZE)):
            digest.update(self.chunk(index)[: self.total - index * CHUNK_SIZE])
        return digest.hexdigest()


def stored_sha256(server: SeaweedFS, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    body = server.client().get_object(Bucket=bucket, Key=key)["Body"]
    for block in iter(lambda: body.read(CHUNK_SIZE), b""):
        digest.update(block)
    return digest.hexdigest()


def unfinished(server: SeaweedFS, bucket: str) -> list[str]:
    return [upload["Key"] for upload in server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


class Outage:
    """Takes the server away when the source reaches a byte, and brings it back `seconds` later (None: never)."""

    def __init__(self, server: SeaweedFS, seconds: float | None, *, hang: bool = False) -> None:
        self.server, self.seconds, self.hang = server, seconds, hang
        self.began = self.ended = 0.0
        self._thread: threading.Thread | None = None

    def __call__(self) -> None:
        if self.hang:
            self.server.hang()
        else:
            self.server.kill()
        self.began = time.monotonic()
        if self.seconds is not None:
            self._thread = threading.Thread(target=self._bring_back, daemon=True)
            self._thread.start()

    def _bring_back(self) -> None:
        assert self.seconds is not None
        time.sleep(self.seconds)
        if self.hang:
            self.server.resume()
        else:
            self.server.start()  # same ports, same data folder; returns once it answers S3
        self.ended = time.monotonic()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=120)

    @property
    def length(self) -> float:
        return self.ended - self.began


def ride_out(server: SeaweedFS, bucket: str, outage: Outage, parts: int, **settings: Any) -> tuple[list[str], float]:
    """Upload `parts` parts with `outage` starting in the third; asserts a correct archive. Returns the warnings
    and the peak of traced memory."""
    warnings: list[str] = []
    storage = storage_for(server, bucket, warnings, **settings)
    source = DumpSource(total=parts * PART + 12_345, at_byte=2 * PART + CHUNK_SIZE, action=outage)
    tracemalloc.start()
    try:
        info = storage.put("db.dump", source)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        outage.join()
    expected = source.expected_sha256()
    assert info.size == source.total
    assert info.metadata["sha256"] == expected
    # What the bucket holds is the archive, byte for byte, and the record matches it.
    assert stored_sha256(server, bucket, "backups/db.dump") == expected
    assert storage.stat("db.dump").metadata["sha256"] == expected
    assert unfinished(server, bucket) == []
    return warnings, peak


def test_a_kill_of_ten_seconds_mid_upload_is_ridden_out(server: SeaweedFS, bucket: str) -> None:
    outage = Outage(server, 10)
    warnings, peak = ride_out(server, bucket, outage, parts=8, retry_deadline=60)
    assert outage.length >= 10
    retries = [line for line in warnings if "retrying in" in line]
    assert retries, warnings
    # One line per retry: the request, the endpoint, the attempt, the time spent of the deadline, the cause.
    assert any(line.startswith(f"S3 UploadPart at {server.endpoint_url} failed (attempt 1, ") for line in retries)
    assert all(" s of 60 s): " in line and "\n" not in line for line in retries)
    assert any("EndpointConnectionError" in line or "ConnectionClosedError" in line for line in retries)
    assert not any(server.secret_key in line for line in warnings)
    # A part is retried from the buffer that holds it: still about two parts in memory, outage or not.
    assert peak < 3 * PART, f"peak {peak / PART:.1f} parts"


def test_a_hang_mid_upload_is_noticed_by_the_timeouts_and_ridden_out(server: SeaweedFS, bucket: str) -> None:
    # SIGSTOP: connections are accepted and never answered; only a timeout notices.
    outage = Outage(server, 8, hang=True)
    warnings, _ = ride_out(server, bucket, outage, parts=5, retry_deadline=30, connect_timeout=2, read_timeout=2)
    assert outage.length >= 8
    noticed = [line for line in warnings if "Timeout" in line or "ConnectionClosedError" in line]
    assert noticed and all("retrying in" in line for line in noticed), warnings


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("CHRONO_TEST_LONG_OUTAGE"),
    reason="about 70-85 s (a 60 s outage, then up to one 15 s wait): more than the suite's budget for one test; "
    "the 10 s kill and the hang above cover the same path. Run with CHRONO_TEST_LONG_OUTAGE=1.",
)
def test_an_outage_of_a_minute_mid_upload_is_ridden_out_with_the_default_deadline(
    server: SeaweedFS, bucket: str
) -> None:
    outage = Outage(server, 60)
    started = time.monotonic()
    warnings, peak = ride_out(server, bucket, outage, parts=4)  # S3Config's default deadline: 300 s
    assert outage.length >= 60
    # Waits are capped: the server is used again within one wait of its return.
    assert time.monotonic() - started < outage.length + MAX_WAIT + 10
    assert len([line for line in warnings if "retrying in" in line]) >= 5
    assert peak < 3 * PART


@pytest.mark.parametrize("hang", [False, True], ids=["killed", "hung"])
def test_the_retry_stops_at_the_deadline_with_a_clear_error_and_nothing_left(
    server: SeaweedFS, bucket: str, hang: bool
) -> None:
    warnings: list[str] = []
    storage = storage_for(server, bucket, warnings, retry_deadline=6, connect_timeout=2, read_timeout=2)
    outage = Outage(server, None, hang=hang)
    source = DumpSource(total=8 * PART, at_byte=2 * PART + CHUNK_SIZE, action=outage)
    try:
        with pytest.raises(StorageError) as raised:
            storage.put("db.dump", source)  # type: ignore[arg-type]
        assert outage.began, f"it failed before the outage: {raised.value.message}"
        gave_up_after = time.monotonic() - outage.began
    finally:
        if hang:
            server.resume()
        else:
            server.start()
    error = raised.value
    assert error.exit_code == ExitCode.STORAGE
    # The endpoint, how long, the last cause, and what to do.
    assert error.message.startswith(f"{server.endpoint_url} did not work for ")
    assert " attempts) when trying to upload db.dump in s3://" in error.message
    assert "; the last failure: " in error.message
    # Hung: the request times out, or the send does and the connection is closed under it. Killed: refused.
    noticed = ("Timeout", "ConnectionClosedError") if hang else ("EndpointConnectionError",)
    assert any(word in error.message for word in noticed), error.message
    assert "S3_RETRY_DEADLINE (6 s)" in error.hint and "raise S3_RETRY_DEADLINE" in error.hint
    assert server.secret_key not in error.message + error.hint + "".join(warnings)
    # Retried up to the deadline, then a short try at aborting, then done.
    assert 6 <= gave_up_after < 6 + 2 + 6 + 2 + 5, gave_up_after
    assert source.sent < source.total  # it stopped reading the dump once nothing could store it
    # No object; the upload was aborted if the server answered, else it is on record for the next run.
    with pytest.raises(ObjectNotFound):
        storage.stat("db.dump")
    left = unfinished(server, bucket)
    if left:
        assert [key for key, _ in storage.unfinished_uploads()] == ["db.dump"]
        assert storage.abort_stale_uploads() == ["db.dump"]
    assert unfinished(server, bucket) == []


def test_access_denied_is_not_retried(server: SeaweedFS, bucket: str) -> None:
    warnings: list[str] = []
    config = S3Config(bucket=bucket, endpoint_url=server.endpoint_url, region=server.region, retry_deadline=60)
    never_issued = boto3.Session(
        aws_access_key_id=f"AKID{secrets.token_hex(8).upper()}",
        aws_secret_access_key=secrets.token_urlsafe(24),
        region_name=server.region,
    )
    wrong = S3Storage(config, session=never_issued, warn=warnings.append)
    for attempt in (wrong.list, lambda: wrong.put("a.bin", io.BytesIO(b"x"))):
        started = time.monotonic()
        with pytest.raises(StorageError) as raised:
            attempt()
        assert time.monotonic() - started < 3
        assert "InvalidAccessKeyId" in raised.value.message
    missing = S3Storage(
        S3Config(bucket="no-such-bucket-here", endpoint_url=server.endpoint_url, retry_deadline=60),
        session=server.session(),
        warn=warnings.append,
    )
    started = time.monotonic()
    with pytest.raises(StorageError, match="does not exist"):
        missing.list()
    assert time.monotonic() - started < 3
    assert warnings == []


# ------------------------------------------------------------------------------ request checksums, both modes


@pytest.mark.parametrize("mode", ["when_required", "when_supported"])
def test_request_checksums_in_both_modes(server: SeaweedFS, bucket: str, mode: str) -> None:
    warnings: list[str] = []
    storage = storage_for(server, bucket, warnings, checksums=mode)
    sent: list[dict[str, str]] = []
    storage.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append({k.lower(): str(v) for k, v in request.headers.items()})
    )
    data = secrets.token_bytes(2 * PART + 7)
    info = storage.put("both.bin", io.BytesIO(data))
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    with storage.open("both.bin") as stream:
        assert stream.read() == data
    with_checksums = [h for h in sent if any(name.startswith("x-amz-checksum-") for name in h)]
    if mode == "when_required":
        # What R2, B2, Google Cloud Storage and older MinIO need: no flexible checksum headers at all.
        assert with_checksums == []
        assert not any("x-amz-sdk-checksum-algorithm" in h for h in sent)
    else:
        assert with_checksums  # boto3 computes CRC32s, and SeaweedFS accepts them
    assert warnings == []


def test_s3_settings_come_from_the_option_table(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}
    default = S3Storage.from_env("s3://bucket/p", keys)
    assert default.config.retry_deadline == 300 and default.config.checksums == "when_required"
    # S3Config's own defaults (the library API) are the table's.
    assert S3Config(bucket="bucket").retry_deadline == float(str(BY_ENV["S3_RETRY_DEADLINE"].default))
    assert S3Config(bucket="bucket").checksums == BY_ENV["S3_CHECKSUMS"].default
    assert default.client.meta.config.request_checksum_calculation == "when_required"
    assert default.client.meta.config.response_checksum_validation == "when_required"
    assert default.client.meta.config.retries["total_max_attempts"] == 1  # botocore's own retries are off
    chosen = S3Storage.from_env("s3://bucket/p", {**keys, "S3_RETRY_DEADLINE": "0", "S3_CHECKSUMS": "When_Supported"})
    assert chosen.config.retry_deadline == 0 and chosen.config.checksums == "when_supported"
    assert chosen.client.meta.config.request_checksum_calculation == "when_supported"
    for variable, value in (("S3_RETRY_DEADLINE", "-1"), ("S3_RETRY_DEADLINE", "1m"), ("S3_CHECKSUMS", "always")):
        with pytest.raises(ConfigError) as raised:
            S3Storage.from_env("s3://bucket/p", {**keys, variable: value})
        assert variable in raised.value.message and raised.value.exit_code == ExitCode.CONFIG


# ------------------------------------------------------------------------------ what is retried, how long


class _Http:
    def __init__(self, status: int) -> None:
        self.status_code = status


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (500, "InternalError", True),
        (503, "SlowDown", True),
        (502, "", True),
        (429, "", True),
        (400, "RequestTimeout", True),
        (200, "", False),
        (403, "AccessDenied", False),
        (403, "SignatureDoesNotMatch", False),
        (404, "NoSuchBucket", False),
        (400, "InvalidArgument", False),
        (501, "NotImplemented", False),
    ],
)
def test_only_what_can_heal_is_retried(status: int, code: str, retried: bool) -> None:
    parsed = {"Error": {"Code": code}} if code else {}
    assert (retryable_cause((_Http(status), parsed), None) is not None) is retried


def test_connection_failures_are_retried_and_other_exceptions_are_not() -> None:
    assert retryable_cause(None, EndpointConnectionError(endpoint_url="http://127.0.0.1:1/x"))
    assert retryable_cause(None, ReadTimeoutError(endpoint_url="http://127.0.0.1:1/x"))
    assert retryable_cause(None, ValueError("a bug")) is None
    assert retryable_cause(None, ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject")) is None


def test_waits_double_from_one_second_to_fifteen_with_jitter() -> None:
    low = RetryPolicy(60, "http://s3", print, jitter=lambda: 0.0)
    high = RetryPolicy(60, "http://s3", print, jitter=lambda: 1.0)
    assert [high.wait_before(n) for n in range(1, 8)] == [1, 2, 4, 8, 15, 15, 15]
    assert [low.wait_before(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 7.5, 7.5, 7.5]
