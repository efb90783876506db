"""S3 and S3-compatible object stores (AWS, Cloudflare R2, MinIO, SeaweedFS) behind the storage protocol.

S3Storage is the store: its client and configuration, the protocol (put, open, list, stat, delete) and the
cleanup of unfinished uploads. How it writes a stream is in chrono_ci.storage.s3.upload, how it reads one in
chrono_ci.storage.s3.reader, and how botocore's errors become StorageErrors in chrono_ci.storage.s3.errors:
nothing above chrono_ci.storage.s3 sees a botocore type.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from chrono_ci.config.options import BY_ENV
from chrono_ci.errors import StorageError
from chrono_ci.storage.base import CHUNK_SIZE, ObjectInfo, Seal
from chrono_ci.storage.s3.config import (
    MAX_KEY_BYTES,
    S3Config,
    check_endpoint,
    check_sse,
    check_storage_class,
    env_value,
    parse_s3_url,
)
from chrono_ci.storage.s3.credentials import session_from_env
from chrono_ci.storage.s3.errors import _DENIED_CODES
from chrono_ci.storage.s3.parts import read_part, storable_metadata
from chrono_ci.storage.s3.reader import ObjectReader
from chrono_ci.storage.s3.retry import RetryPolicy
from chrono_ci.storage.s3.tagging import content_md5_instead
from chrono_ci.storage.s3.upload import PendingUpload, S3Uploads

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

__all__ = ["S3Storage"]

log = logging.getLogger(__name__)


class S3Storage(S3Uploads):
    def __init__(
        self,
        config: S3Config,
        session: boto3.Session | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._session = session if session is not None else boto3.Session(region_name=config.region)
        self._key_prefix = f"{config.prefix}/" if config.prefix else ""
        region = config.region or self._session.region_name or "us-east-1"
        client_config = Config(
            region_name=region,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            # One attempt: chrono_ci.storage.s3.retry retries, and botocore's retries would multiply with it.
            retries={"mode": "standard", "total_max_attempts": 1},
            request_checksum_calculation=config.checksums,
            response_checksum_validation=config.checksums,
            # Other S3 servers rarely resolve bucket.host names; path style works on all of them.
            s3={"addressing_style": "path"} if config.endpoint_url else {},
        )
        self.client: S3Client = self._session.client("s3", endpoint_url=config.endpoint_url, config=client_config)
        self._warn = warn or log.warning
        self.retry = RetryPolicy(config.retry_deadline, self._endpoint(), self._warn)
        self.retry.install(self.client)
        if config.checksums == "when_required":
            self.client.meta.events.register("before-call.s3.PutObjectTagging", content_md5_instead)
        # Uploads whose abort failed (the server was unreachable): certainly ours, retried by abort_stale_uploads.
        self._unaborted: dict[str, PendingUpload] = {}
        self._tags_usable: bool | None = None
        self._tags_unreadable = False

    @classmethod
    def from_env(
        cls, url: str, environ: Mapping[str, str] | None = None, warn: Callable[[str], None] | None = None
    ) -> S3Storage:
        """The backend for an s3:// URL, configured by S3_* variables and credentialed by AWS_* ones."""
        env = os.environ if environ is None else environ
        bucket, prefix = parse_s3_url(url)
        sse = env_value(env, "S3_SSE")
        kms_key_id = env_value(env, "S3_SSE_KMS_KEY_ID")
        # Checked here as well as in S3Config so that the message names the variable the user set.
        sse = check_sse(sse, kms_key_id, "S3_SSE", "S3_SSE_KMS_KEY_ID")
        storage_class = check_storage_class(env_value(env, "S3_STORAGE_CLASS"), "S3_STORAGE_CLASS")
        endpoint_url = check_endpoint(env_value(env, "S3_ENDPOINT_URL"), "S3_ENDPOINT_URL")
        region = env_value(env, "S3_REGION") or env_value(env, "AWS_REGION") or env_value(env, "AWS_DEFAULT_REGION")
        config = S3Config(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint_url,
            region=region,
            sse=sse,
            sse_kms_key_id=kms_key_id,
            storage_class=storage_class,
            retry_deadline=float(_declared(env, "S3_RETRY_DEADLINE")),
            checksums=_declared(env, "S3_CHECKSUMS"),
        )
        return cls(config, session=session_from_env(env, region), warn=warn)

    @property
    def url(self) -> str:
        return f"s3://{self.config.bucket}/{self.config.prefix}" if self.config.prefix else f"s3://{self.config.bucket}"

    # ------------------------------------------------------------------------------------------- protocol

    def put(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None, seal: Seal | None = None
    ) -> ObjectInfo:
        full_key = self._full_key(key)
        user_metadata = storable_metadata(metadata)
        digest = hashlib.sha256()
        first, at_end = read_part(source, digest, self.config.part_size, None)
        if at_end:
            sha256 = digest.hexdigest()
            sealed = storable_metadata({**user_metadata, **(seal(len(first), sha256) if seal else {})})
            return self._put_single(key, full_key, first, sha256, sealed)
        # Handed over in a list that the callee empties: a reference kept in this frame would pin the first
        # part in memory until the whole upload ends, a third buffer.
        handover = [first]
        del first
        return self._put_multipart(key, full_key, source, handover, digest, user_metadata, seal)

    def open(self, key: str) -> BinaryIO:
        full_key = self._full_key(key)
        with self._errors("read", key):
            response = self.client.get_object(Bucket=self.config.bucket, Key=full_key)
        return io.BufferedReader(ObjectReader(self, key, full_key, response), buffer_size=CHUNK_SIZE)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("list", None):
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=self._key_prefix + prefix):
                for entry in page.get("Contents", []):
                    key = entry["Key"][len(self._key_prefix) :]
                    # Zero-byte "folder" markers that consoles create are not archives.
                    if key and not key.endswith("/"):
                        found.append(ObjectInfo(key=key, size=entry["Size"], modified=entry["LastModified"]))
        return found

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._full_key(key))

    def delete(self, key: str) -> None:
        full_key = self._full_key(key)
        head = self._head(key, full_key)
        lock = _active_lock(head)
        if lock:
            # On a versioned bucket S3 would answer with a delete marker: the archive would vanish from
            # listings while the lock keeps it (and its cost) for the whole retention period.
            raise self._locked(key, lock)
        try:
            self.client.delete_object(Bucket=self.config.bucket, Key=full_key)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in _DENIED_CODES and "lock" in error.get("Message", "").lower():
                raise self._locked(key, "object lock") from exc
            raise self._storage_error(exc, "delete", key) from exc
        except BotoCoreError as exc:
            raise self._storage_error(exc, "delete", key) from exc

    # ------------------------------------------------------------------------------------------- cleanup

    def unfinished_uploads(self) -> builtins.list[tuple[str, str]]:
        """(key, upload id) of the uploads this process could not abort, for the caller to keep on record."""
        return [(upload.key, upload.upload_id) for upload in self._unaborted.values()]

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one unfinished upload (one a previous run recorded); a missing upload is not an error."""
        self._abort_upload(PendingUpload(key, self._full_key(key), upload_id), quiet=False)

    def abort_stale_uploads(
        self,
        older_than: timedelta = timedelta(days=1),
        *,
        named: Callable[[str], bool] | None = None,
        now: datetime | None = None,
    ) -> builtins.list[str]:
        """Abort unfinished multipart uploads under our prefix; return their keys.

        First those this process failed to abort, whatever their age; then any under the prefix started more
        than `older_than` before `now` (a run that was killed) and, with `named`, whose key (after the prefix)
        it accepts. The age keeps a concurrent run's upload safe. Parts of an unfinished upload are billed until
        aborted, and no listing of objects shows them.
        """
        aborted: builtins.list[str] = []
        for upload_id, upload in list(self._unaborted.items()):
            self._abort_upload(upload, quiet=False)
            self._unaborted.pop(upload_id, None)
            aborted.append(upload.key)
        cutoff = (now or datetime.now(UTC)) - older_than
        paginator = self.client.get_paginator("list_multipart_uploads")
        stale: builtins.list[PendingUpload] = []
        with self._errors("list unfinished uploads in", None):
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=self._key_prefix):
                for entry in page.get("Uploads", []):
                    key = entry["Key"][len(self._key_prefix) :]
                    if entry["Initiated"] <= cutoff and (named is None or named(key)):
                        stale.append(PendingUpload(key, entry["Key"], entry["UploadId"]))
        for upload in stale:
            self._abort_upload(upload, quiet=False)
            aborted.append(upload.key)
        return aborted

    # ------------------------------------------------------------------------------------------- helpers

    def _full_key(self, key: str) -> str:
        full_key = self._key_prefix + key
        if (
            not key
            or key.startswith("/")
            or "\0" in key
            or any(part in ("", ".", "..") for part in key.split("/"))
            or len(full_key.encode()) > MAX_KEY_BYTES
        ):
            raise StorageError(
                f"Invalid object name for S3: {key!r}.",
                hint=f"Use a plain name: no empty, '.' or '..' segments, at most {MAX_KEY_BYTES} bytes with the "
                "prefix.",
            )
        return full_key


def _declared(environ: Mapping[str, str], variable: str) -> Any:
    """A setting of the option table, parsed by its grammar, or its declared default when unset."""
    setting = BY_ENV[variable]
    raw = env_value(environ, variable)
    return setting.parse(raw if raw is not None else str(setting.default), variable)


def _active_lock(head: HeadObjectOutputTypeDef) -> str:
    """What holds the object, or "" when deleting is allowed. Only visible with s3:GetObjectRetention."""
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return "a legal hold"
    until = head.get("ObjectLockRetainUntilDate")
    if until is not None and until > datetime.now(UTC):
        mode = head.get("ObjectLockMode", "retention")
        return f"Object Lock ({mode} until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
    return ""
