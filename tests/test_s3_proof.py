"""What the store itself proves about an upload, and where the end of an archive's record (sha256, size,
signature) is kept: bytes altered on the way are refused by the store (Content-MD5), the record goes to object
tags without a server-side copy, credentials without tags fall back to the copy once per run, a record whose tags
cannot be read is never trusted, and an S3-only backup is proven without downloading the object back.

All against a real SeaweedFS; its IAM API makes the users with narrower rights."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import urllib.parse
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chrono_ci.archive.catalog import in_storage
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.archive.signing import signing_key_from
from chrono_ci.config.settings import resolve_settings
from chrono_ci.errors import StorageError
from chrono_ci.jobs.backup import run_backup
from chrono_ci.report.console import Reporter
from chrono_ci.storage.base import SEALED_NAMES
from chrono_ci.storage.s3.config import MIN_PART_SIZE
from chrono_ci.storage.s3.store import S3Storage
from tests.fixtures.postgres import CliResult, PgServer
from tests.fixtures.seaweedfs_server import SeaweedFS
from tests.test_s3 import NO_TAGS_ACTIONS, make_storage, no_tags_keys, with_keys
from tests.test_upload import PREFIX, random_hex_database, s3_env

Run = Callable[..., CliResult]
SIGNING_KEY = "a-signing-key-for-the-proof-tests-0123456789"


def count_calls(storage: S3Storage) -> Counter[str]:
    """Every S3 operation the storage's client calls, by name, as it calls it."""
    calls: Counter[str] = Counter()

    def seen(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    storage.client.meta.events.register("before-call.s3", seen)
    return calls


def alter_body(storage: S3Storage, operation: str, *, drop_md5: bool = False) -> list[int]:
    """Flip one byte of the first `operation` request's body after we computed its Content-MD5 (and before it is
    signed, so that only the MD5 can tell): what a faulty proxy, NIC or memory would do. Returns the sizes seen."""
    altered: list[int] = []

    def alter(params: dict[str, Any], **_: Any) -> None:
        if altered:
            return
        body = bytearray(params["body"])
        body[len(body) // 2] ^= 0x01
        params["body"] = bytes(body)
        altered.append(len(body))
        if drop_md5:
            params["headers"].pop("Content-MD5", None)

    storage.client.meta.events.register(f"before-call.s3.{operation}", alter)
    return altered


def keys_under(seaweedfs: SeaweedFS, bucket: str) -> list[str]:
    return [o["Key"] for o in seaweedfs.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


# ------------------------------------------------------------------------------------- Content-MD5


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_a_part_altered_on_the_way_is_refused_and_nothing_is_kept(
    seaweedfs: SeaweedFS, s3_bucket: str, checksums: str
) -> None:
    storage = make_storage(seaweedfs, s3_bucket, checksums=checksums)
    altered = alter_body(storage, "UploadPart")
    with pytest.raises(StorageError) as raised:
        storage.put("big.bin", io.BytesIO(secrets.token_bytes(2 * MIN_PART_SIZE + 1)))
    assert altered == [MIN_PART_SIZE]
    assert "BadDigest" in raised.value.message and "altered" in raised.value.message
    assert "Run the backup again" in (raised.value.hint or "")
    assert keys_under(seaweedfs, s3_bucket) == []
    assert seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_without_content_md5_the_same_alteration_would_be_kept(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    # The control: the sha256 in the record is the stream's, so only the store's own check of what it received
    # stands between an altered part and an archive that looks proven.
    storage = make_storage(seaweedfs, s3_bucket)
    alter_body(storage, "UploadPart", drop_md5=True)
    data = secrets.token_bytes(2 * MIN_PART_SIZE + 1)
    info = storage.put("big.bin", io.BytesIO(data))
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    stored = seaweedfs.client().get_object(Bucket=s3_bucket, Key="backups/prod/big.bin")["Body"].read()
    assert len(stored) == len(data) and stored != data
    # The multipart ETag then differs from the MD5 of the parts we sent: the proof no longer claims it.
    assert "ETag" not in info.proof


def test_a_single_put_altered_on_the_way_is_refused(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    storage = make_storage(seaweedfs, s3_bucket)
    alter_body(storage, "PutObject")
    with pytest.raises(StorageError, match="BadDigest"):
        storage.put("small.bin", io.BytesIO(b"a small archive, one request"))
    assert keys_under(seaweedfs, s3_bucket) == []


def test_what_the_store_proved_is_reported(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    storage = make_storage(seaweedfs, s3_bucket)
    info = storage.put("big.bin", io.BytesIO(secrets.token_bytes(2 * MIN_PART_SIZE + 1)))
    assert info.proof == (
        "the store checked the MD5 of each of the 3 parts it took (Content-MD5); its ETag is the MD5 of those "
        "parts' MD5s"
    )
    assert "MD5" in storage.put("small.bin", io.BytesIO(b"small")).proof


# ------------------------------------------------------------------------------------- the record in tags


def test_the_record_goes_to_tags_without_a_copy_and_reads_back_signed(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    storage = make_storage(seaweedfs, s3_bucket)
    calls = count_calls(storage)
    key = signing_key_from(SIGNING_KEY)
    name = "postgres_backup_2026-11-25_02-00-00.sql.zst"
    record = ArchiveRecord(
        file=name,
        kind="postgres",
        source="db.example.com:5432/app",
        created_at="2026-11-25T02:00:00.000Z",
        compression="zstd",
    )
    data = secrets.token_bytes(2 * MIN_PART_SIZE + 1)
    storage.put(name, io.BytesIO(data), record.metadata(), record.seal(key))
    assert calls["CopyObject"] == calls["UploadPartCopy"] == 0 and calls["PutObjectTagging"] == 1
    client = seaweedfs.client()
    head = client.head_object(Bucket=s3_bucket, Key=f"backups/prod/{name}")["Metadata"]
    tagged = client.get_object_tagging(Bucket=s3_bucket, Key=f"backups/prod/{name}")["TagSet"]
    tags = {t["Key"]: t["Value"] for t in tagged}
    assert "sha256" not in head and head["chrono-kind"] == "postgres"
    assert set(tags) == {"sha256", "chrono-size", "chrono-signature"}
    assert tags["sha256"] == hashlib.sha256(data).hexdigest() and tags["chrono-size"] == str(len(data))

    (vetted,) = in_storage(make_storage(seaweedfs, s3_bucket), key, datetime.now(UTC))
    assert vetted.trusted, vetted.verdict
    assert vetted.record is not None and vetted.record.sha256 == tags["sha256"]

    # A tag changed by anyone who may tag (a weaker right than writing the object) breaks the signature.
    forged = {**tags, "sha256": hashlib.sha256(b"something else").hexdigest()}
    client.put_object_tagging(
        Bucket=s3_bucket,
        Key=f"backups/prod/{name}",
        Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in forged.items()]},
    )
    (vetted,) = in_storage(make_storage(seaweedfs, s3_bucket), key, datetime.now(UTC))
    assert not vetted.trusted and vetted.verdict.signature == "invalid"


def test_a_tag_never_overrides_the_metadata_nor_adds_to_it(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    # Tagging is a weaker right than writing the object: a tag may only complete the record's end.
    storage = make_storage(seaweedfs, s3_bucket)
    storage.put("big.bin", io.BytesIO(secrets.token_bytes(MIN_PART_SIZE + 1)), {"chrono-kind": "postgres"})
    client = seaweedfs.client()
    tags = client.get_object_tagging(Bucket=s3_bucket, Key="backups/prod/big.bin")["TagSet"]
    extra = [{"Key": "chrono-kind", "Value": "supabase"}, {"Key": "chrono-series", "Value": "safety"}]
    client.put_object_tagging(Bucket=s3_bucket, Key="backups/prod/big.bin", Tagging={"TagSet": [*tags, *extra]})
    metadata = storage.stat("big.bin").metadata
    assert metadata["chrono-kind"] == "postgres" and "chrono-series" not in metadata and "sha256" in metadata


def test_credentials_without_tags_fall_back_to_the_copy_once_per_run(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    warnings: list[str] = []
    base = make_storage(seaweedfs, s3_bucket)
    keys = no_tags_keys(seaweedfs)
    storage = with_keys(base, keys)
    storage = S3Storage(storage.config, session=storage._session, warn=warnings.append)
    calls = count_calls(storage)
    first, second = (secrets.token_bytes(MIN_PART_SIZE + n) for n in (1, 2))
    storage.put("first.bin", io.BytesIO(first))
    storage.put("second.bin", io.BytesIO(second))
    # Tried once, refused, and not tried again in this run: each archive got the copy.
    assert calls["PutObjectTagging"] == 1 and calls["CopyObject"] == 2
    (warning,) = warnings
    assert "AccessDenied" in warning and "server-side copy" in warning and "s3:PutObjectTagging" in warning
    client = seaweedfs.client()
    for name, data in (("first.bin", first), ("second.bin", second)):
        head = client.head_object(Bucket=s3_bucket, Key=f"backups/prod/{name}")["Metadata"]
        assert head["sha256"] == hashlib.sha256(data).hexdigest()
        assert storage.stat(name).metadata["sha256"] == head["sha256"]


def test_a_record_whose_tags_cannot_be_read_is_never_trusted(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    key = signing_key_from(SIGNING_KEY)
    name = "postgres_backup_2026-11-25_02-00-00.sql.zst"
    record = ArchiveRecord(
        file=name, kind="postgres", source="db:5432/app", created_at="2026-11-25T02:00:00.000Z", compression="zstd"
    )
    make_storage(seaweedfs, s3_bucket).put(
        name, io.BytesIO(secrets.token_bytes(MIN_PART_SIZE + 1)), record.metadata(), record.seal(key)
    )
    warnings: list[str] = []
    reader = with_keys(make_storage(seaweedfs, s3_bucket), no_tags_keys(seaweedfs))
    reader = S3Storage(reader.config, session=reader._session, warn=warnings.append)
    judged = [in_storage(reader, key, datetime.now(UTC)) for _ in range(2)]
    for (vetted,) in judged:
        assert not vetted.trusted
        assert vetted.record is not None and vetted.record.sha256 is None
    (warning,) = warnings  # once per run, however many objects
    assert "s3:GetObjectTagging" in warning and "not trusted" in warning


# ------------------------------------------------------------------------------------- S3-only backups


@pytest.fixture
def big_url(pg18: PgServer, make_database: Callable[..., str]) -> str:
    # About 10 MB of archive (hex compresses to half): two 8 MiB parts, the multipart path of a real backup.
    return random_hex_database(pg18, make_database, 200_000)


def test_an_s3_only_backup_is_proven_without_downloading_it(
    run_cli: Run,
    big_url: str,
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: Counter[str] = Counter()
    made = S3Storage.__init__

    def counted(self: S3Storage, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.client.meta.events.register("before-call.s3", lambda model, **_: calls.update([model.name]))

    monkeypatch.setattr(S3Storage, "__init__", counted)
    env = {
        "DATABASE_URL": big_url,
        "KEEP_LOCAL": "false",
        "BACKUP_SIGNING_KEY": SIGNING_KEY,
        **s3_env(seaweedfs, s3_bucket),
    }
    settings = resolve_settings({"backup_dir": str(tmp_path / "b")}, env)
    result = run_backup(settings, "postgres", Reporter(stream=io.StringIO()), environ=env)

    assert calls["GetObject"] == 0, calls
    assert calls["UploadPart"] >= 2 and calls["CopyObject"] == 0 and calls["PutObjectTagging"] == 1
    assert result.check.ok
    checks = {check.name: check for check in result.check.checks}
    assert list(checks) == ["decompression", "checksum", "trailer", "raw size"]
    assert "Content-MD5" in checks["checksum"].detail and result.record.sha256 in checks["checksum"].detail
    assert "decompressed as written (frame checksum verified)" in checks["decompression"].detail
    assert result.record.verified is not None and "not_checked" not in result.record.verified

    # Another machine, only the bucket: the record in tags is trusted, and a restore proves the sha256.
    elsewhere = {**env, "BACKUP_DIR": str(tmp_path / "elsewhere")}
    listed = run_cli("--json", "recovery", "list", "--from", "s3", env=elsewhere)
    assert listed.code == 0, listed.output
    (row,) = json.loads(listed.stdout)["archives"]
    assert row["sha256"] == result.record.sha256
    tested = run_cli("recovery", "test", result.record.file, "--from", "s3", env=elsewhere)
    assert tested.code == 0, tested.output

    # The same object with one byte changed and its record (metadata and tags) kept: the restore refuses it.
    client = seaweedfs.client()
    object_key = f"{PREFIX}/{result.record.file}"
    head = client.head_object(Bucket=s3_bucket, Key=object_key)
    tags = client.get_object_tagging(Bucket=s3_bucket, Key=object_key)["TagSet"]
    body = bytearray(client.get_object(Bucket=s3_bucket, Key=object_key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(
        Bucket=s3_bucket,
        Key=object_key,
        Body=bytes(body),
        Metadata=head["Metadata"],
        Tagging=urllib.parse.urlencode({t["Key"]: t["Value"] for t in tags}),
    )
    restored = run_cli("recovery", "restore", result.record.file, "--from", "s3", "--yes", env=elsewhere)
    assert restored.code == 7, restored.output
    assert "does not match its recorded sha256" in restored.output


def test_an_archived_storage_class_keeps_the_copy(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    # The parts go up in the default class and the copy moves the object to the archived one: had they gone up
    # archived, a fallback copy could not read them (the store takes no tags being unknown until it is tried).
    storage = make_storage(seaweedfs, s3_bucket, storage_class="DEEP_ARCHIVE")
    calls = count_calls(storage)
    data = secrets.token_bytes(MIN_PART_SIZE + 1)
    info = storage.put("cold.bin", io.BytesIO(data))
    assert calls["PutObjectTagging"] == 0 and calls["CopyObject"] == 1
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    head = seaweedfs.client().head_object(Bucket=s3_bucket, Key="backups/prod/cold.bin")
    assert head["Metadata"]["sha256"] == info.metadata["sha256"] and head["StorageClass"] == "DEEP_ARCHIVE"


def test_what_a_seal_writes_is_what_tags_may_carry() -> None:
    # The record module names the seal's fields, the storage the names it takes back from tags: one set.
    record = ArchiveRecord(file="postgres_backup_2026-11-25_02-00-00.sql.zst", kind="postgres")
    sealed = record.seal(signing_key_from(SIGNING_KEY))(1024, "0" * 64)
    assert {*sealed, "sha256"} == SEALED_NAMES


def test_credentials_that_may_tag_but_not_read_tags_fall_back_to_the_copy(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    # Records written where they cannot be read back would all be untrusted: the first upload of the run asks.
    keys = seaweedfs.limited_user(f"tag-only-{secrets.token_hex(4)}", [*NO_TAGS_ACTIONS, "s3:PutObjectTagging"])
    warnings: list[str] = []
    storage = with_keys(make_storage(seaweedfs, s3_bucket), keys)
    storage = S3Storage(storage.config, session=storage._session, warn=warnings.append)
    calls = count_calls(storage)
    data = secrets.token_bytes(MIN_PART_SIZE + 1)
    info = storage.put("big.bin", io.BytesIO(data))
    assert calls["PutObjectTagging"] == 1 and calls["GetObjectTagging"] == 1 and calls["CopyObject"] == 1
    assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()
    head = seaweedfs.client().head_object(Bucket=s3_bucket, Key="backups/prod/big.bin")["Metadata"]
    assert head["sha256"] == info.metadata["sha256"]
    (warning,) = warnings
    assert "AccessDenied" in warning and "server-side copy" in warning
