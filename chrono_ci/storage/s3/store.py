"""S3 and S3-compatible object stores (AWS, Cloudflare R2, MinIO, SeaweedFS) behind the storage protocol.

`put` streams: parts of `part_size` go up while the next one is read, so memory stays at about two parts
whatever the archive's size, and nothing is spooled to disk. A stream that ends within the first part goes up
in one PutObject. Any failure aborts the multipart upload; an abort that fails (the server is down) is
remembered and retried by `abort_stale_uploads()`, meant to be called by retention on every run.

Every botocore error is turned into a StorageError (message and hint) here, at the edge; nothing above this
module sees a botocore type.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from chrono_ci.errors import ConfigError, ObjectNotFound, StorageError
from chrono_ci.storage.base import CHUNK_SIZE, ObjectInfo, Seal
from chrono_ci.storage.s3 import oidc as aws_oidc

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef, HeadObjectOutputTypeDef

__all__ = ["ObjectLocked", "S3Config", "S3Storage", "parse_s3_url"]

log = logging.getLogger(__name__)

MIB = 1 << 20
MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MIB
# After this many parts the part size doubles: 10,000 parts of 8 MiB would cap an archive at 78 GiB, growing
# parts lift that to about 480 GiB while memory stays at two parts of the current size.
PARTS_PER_SIZE_STEP = 2_000
# CopyObject refuses sources above 5 GiB; larger objects are copied range by range (UploadPartCopy).
MAX_COPY_OBJECT_SIZE = 5 * 1024 * MIB
COPY_PART_SIZE = 512 * MIB
MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048  # AWS's limit for all user metadata of one object

SSE_MODES = {"aes256": "AES256", "aws:kms": "aws:kms"}
STORAGE_CLASSES = frozenset(
    {
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "GLACIER_IR",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "SNOW",
        "EXPRESS_ONEZONE",
    }
)
_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "InvalidToken"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
_REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocationConstraint"})
_BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "502", "503", "504"}
)


class ObjectLocked(StorageError):
    """S3 Object Lock (retention or legal hold) protects the object: it cannot be deleted yet."""


# ----------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    sse: str | None = None  # "AES256" | "aws:kms" | None (the bucket's default encryption)
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    part_size: int = DEFAULT_PART_SIZE
    max_attempts: int = 5  # per request, UploadPart included; botocore's standard mode backs off exponentially
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        _check_bucket_name(self.bucket)
        object.__setattr__(self, "prefix", _normalise_prefix(self.prefix))
        object.__setattr__(self, "endpoint_url", _check_endpoint(self.endpoint_url, "endpoint_url"))
        sse = _check_sse(self.sse, self.sse_kms_key_id, "sse", "sse_kms_key_id")
        object.__setattr__(self, "sse", sse)
        object.__setattr__(self, "storage_class", _check_storage_class(self.storage_class, "storage_class"))
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"S3 part_size={self.part_size} is outside what S3 accepts.",
                hint=f"Use between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB) bytes.",
            )
        if self.max_attempts < 1:
            raise ConfigError(f"S3 max_attempts={self.max_attempts} must be at least 1.")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError("S3 connect_timeout and read_timeout must be positive numbers of seconds.")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); ConfigError for anything else."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() != "s3":
        raise ConfigError(
            "The S3 URL does not start with s3://.",
            hint="Write it as s3://BUCKET or s3://BUCKET/PREFIX.",
        )
    location, _, prefix = rest.partition("/")
    if "@" in location:
        # Whatever precedes @ may be a secret: the message must not repeat it.
        raise ConfigError(
            "The S3 URL contains credentials (user:password@); they are never read from the URL.",
            hint="Remove them from the URL and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead.",
        )
    if "?" in rest or "#" in rest:
        raise ConfigError(
            "The S3 URL has a query or fragment (? or #), which is not supported.",
            hint="Use s3://BUCKET/PREFIX; set the endpoint, region and encryption through S3_* variables.",
        )
    if not location:
        raise ConfigError("The S3 URL names no bucket.", hint="Write it as s3://BUCKET/PREFIX.")
    _check_bucket_name(location)
    return location, _normalise_prefix(prefix)


# No message below repeats the URL or a part of it: credentials pasted into it (s3://KEY:SECRET@bucket, with a
# / in the secret) would land in the bucket or prefix the message quotes.


def _check_bucket_name(bucket: str) -> None:
    problem = ""
    if not 3 <= len(bucket) <= 63:
        problem = "it must be 3 to 63 characters long"
    elif not _BUCKET_CHARS.fullmatch(bucket):
        problem = (
            "only lowercase letters, digits, dots and hyphens are allowed, starting and ending with a letter or digit"
        )
    elif ".." in bucket:
        problem = "two dots may not be adjacent"
    elif _is_ip_address(bucket):
        problem = "it may not look like an IP address"
    elif bucket.startswith(_BUCKET_RESERVED_PREFIXES) or bucket.endswith(_BUCKET_RESERVED_SUFFIXES):
        problem = "it starts or ends with a form that S3 reserves"
    if problem:
        raise ConfigError(
            f"The bucket in the S3 URL is not a valid S3 bucket name: {problem}.",
            hint="Check the bucket name in the URL (s3://BUCKET/PREFIX).",
        )


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def _normalise_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    if stripped and any(part in ("", ".", "..") for part in stripped.split("/")):
        raise ConfigError(
            "The prefix in the S3 URL has an empty, '.' or '..' path segment.",
            hint="Use a plain prefix such as backups/prod.",
        )
    return stripped


def _check_endpoint(endpoint: str | None, name: str) -> str | None:
    if not endpoint:
        return None
    parts = endpoint.split("://", 1)
    if len(parts) != 2 or parts[0].lower() not in ("http", "https") or not parts[1].strip("/"):
        raise ConfigError(
            f"{name} is not an http:// or https:// URL.",
            hint="Give the S3 endpoint's base URL, e.g. https://ACCOUNT.r2.cloudflarestorage.com.",
        )
    return endpoint.rstrip("/")


def _check_sse(sse: str | None, kms_key_id: str | None, sse_name: str, kms_name: str) -> str | None:
    canonical = SSE_MODES.get(sse.strip().lower()) if sse else None
    if sse and canonical is None:
        raise ConfigError(
            f"{sse_name}={sse!r} is not a server-side encryption S3 offers here.",
            hint=f"Set {sse_name} to AES256 (S3-managed keys) or aws:kms (KMS), or leave it unset for the "
            "bucket's default encryption.",
        )
    if kms_key_id and canonical != "aws:kms":
        raise ConfigError(
            f"{kms_name} is set but {sse_name} is {canonical or 'unset'}: a KMS key only applies to aws:kms.",
            hint=f"Set {sse_name}=aws:kms, or unset {kms_name}.",
        )
    return canonical


def _check_storage_class(storage_class: str | None, name: str) -> str | None:
    if not storage_class:
        return None
    if storage_class.upper() not in STORAGE_CLASSES:
        raise ConfigError(
            f"{name}={storage_class!r} is not an S3 storage class.",
            hint="Use one of " + ", ".join(sorted(STORAGE_CLASSES)) + ", or leave it unset for STANDARD.",
        )
    return storage_class.upper()


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _session_from_env(environ: Mapping[str, str], region: str | None) -> boto3.Session:
    key_id = _env(environ, "AWS_ACCESS_KEY_ID")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if key_id or secret:
        if not key_id or not secret:
            have, missing = (
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if key_id
                else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            )
            raise ConfigError(f"{have} is set but {missing} is not.", hint="Set both, or neither.")
        return boto3.Session(
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=_env(environ, "AWS_SESSION_TOKEN"),
            region_name=region,
        )
    if aws_oidc.wants_github_oidc(environ):
        return aws_oidc.github_oidc_session(environ, region)
    profile = _env(environ, "AWS_PROFILE")
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as exc:
        raise ConfigError(
            f"AWS_PROFILE={profile!r} names no profile in the AWS config files.",
            hint="Fix AWS_PROFILE, or unset it and give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
        ) from exc


# ------------------------------------------------------------------------------------------------ backend


@dataclass(frozen=True)
class _Upload:
    key: str  # as the caller named it
    full_key: str
    upload_id: str


class S3Storage:
    def __init__(self, config: S3Config, session: boto3.Session | None = None) -> None:
        self.config = config
        self._session = session if session is not None else boto3.Session(region_name=config.region)
        self._key_prefix = f"{config.prefix}/" if config.prefix else ""
        region = config.region or self._session.region_name or "us-east-1"
        client_config = Config(
            region_name=region,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            retries={"mode": "standard", "max_attempts": config.max_attempts},
            # Other S3 servers rarely resolve bucket.host names; path style works on all of them.
            s3={"addressing_style": "path"} if config.endpoint_url else {},
        )
        self.client: S3Client = self._session.client("s3", endpoint_url=config.endpoint_url, config=client_config)
        # Uploads whose abort failed (the server was unreachable): certainly ours, retried by abort_stale_uploads.
        self._unaborted: dict[str, _Upload] = {}

    @classmethod
    def from_env(cls, url: str, environ: Mapping[str, str] | None = None) -> S3Storage:
        """The backend for an s3:// URL, configured by S3_* variables and credentialed by AWS_* ones."""
        env = os.environ if environ is None else environ
        bucket, prefix = parse_s3_url(url)
        sse = _env(env, "S3_SSE")
        kms_key_id = _env(env, "S3_SSE_KMS_KEY_ID")
        # Checked here as well as in S3Config so that the message names the variable the user set.
        sse = _check_sse(sse, kms_key_id, "S3_SSE", "S3_SSE_KMS_KEY_ID")
        storage_class = _check_storage_class(_env(env, "S3_STORAGE_CLASS"), "S3_STORAGE_CLASS")
        endpoint_url = _check_endpoint(_env(env, "S3_ENDPOINT_URL"), "S3_ENDPOINT_URL")
        region = _env(env, "S3_REGION") or _env(env, "AWS_REGION") or _env(env, "AWS_DEFAULT_REGION")
        config = S3Config(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint_url,
            region=region,
            sse=sse,
            sse_kms_key_id=kms_key_id,
            storage_class=storage_class,
        )
        return cls(config, session=_session_from_env(env, region))

    @property
    def url(self) -> str:
        return f"s3://{self.config.bucket}/{self.config.prefix}" if self.config.prefix else f"s3://{self.config.bucket}"

    # ------------------------------------------------------------------------------------------- protocol

    def put(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None, seal: Seal | None = None
    ) -> ObjectInfo:
        full_key = self._full_key(key)
        user_metadata = _user_metadata(metadata)
        digest = hashlib.sha256()
        first, at_end = _read_part(source, digest, self.config.part_size, None)
        if at_end:
            sha256 = digest.hexdigest()
            sealed = _user_metadata({**user_metadata, **(seal(len(first), sha256) if seal else {})})
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
        return io.BufferedReader(_ObjectReader(self, key, full_key, response), buffer_size=CHUNK_SIZE)

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
        head = self._head(key, self._full_key(key))
        return ObjectInfo(
            key=key, size=head["ContentLength"], modified=head["LastModified"], metadata=dict(head.get("Metadata", {}))
        )

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
        self._abort_upload(_Upload(key, self._full_key(key), upload_id), quiet=False)

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
        stale: builtins.list[_Upload] = []
        with self._errors("list unfinished uploads in", None):
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=self._key_prefix):
                for entry in page.get("Uploads", []):
                    key = entry["Key"][len(self._key_prefix) :]
                    if entry["Initiated"] <= cutoff and (named is None or named(key)):
                        stale.append(_Upload(key, entry["Key"], entry["UploadId"]))
        for upload in stale:
            self._abort_upload(upload, quiet=False)
            aborted.append(upload.key)
        return aborted

    # ------------------------------------------------------------------------------------------- writing

    def _put_single(
        self, key: str, full_key: str, body: bytearray, sha256: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        with self._errors("upload", key):
            response = self.client.put_object(
                Bucket=self.config.bucket,
                Key=full_key,
                # botocore takes any bytes-like body; bytes(body) would copy a whole part.
                Body=body,  # type: ignore[arg-type]
                ContentType="application/octet-stream",
                Metadata={**metadata, "sha256": sha256},
                **self._write_args(with_storage_class=True),
            )
        return self._verify(key, full_key, len(body), sha256, response.get("VersionId"))

    def _put_multipart(
        self,
        key: str,
        full_key: str,
        source: BinaryIO,
        handover: builtins.list[bytearray],
        digest: hashlib._Hash,
        metadata: dict[str, str],
        seal: Seal | None,
    ) -> ObjectInfo:
        # The storage class is left to the copy below: CopyObject cannot read an archived class (GLACIER,
        # DEEP_ARCHIVE), so the parts go up in the default class and the copy moves the object.
        upload = self._create_upload(key, full_key, metadata, with_storage_class=False)
        parts: builtins.list[CompletedPartTypeDef] = []
        size = 0
        pending: Future[CompletedPartTypeDef] | None = None
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chrono-s3-part")
        try:
            buffer, at_end, number = handover.pop(), False, 1
            while True:
                if pending is not None:
                    parts.append(pending.result())
                pending = executor.submit(self._upload_part, upload, number, buffer)
                size += len(buffer)
                if at_end:
                    break
                number += 1
                buffer, at_end = _read_part(source, digest, self._part_size_for(number), pending)
                if not buffer:
                    break
                if number > MAX_PARTS:
                    raise StorageError(
                        f"{key} is larger than one S3 multipart upload can hold ({MAX_PARTS} parts).",
                        hint="Raise the S3 part size, or back up less per archive (per database or schema).",
                    )
            parts.append(pending.result())
            pending = None
            with self._errors("finish uploading", key):
                completed = self.client.complete_multipart_upload(
                    Bucket=self.config.bucket,
                    Key=full_key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if pending is not None:
                # A part still on the wire could land after the abort and leave an orphan behind.
                wait([pending])
            self._abort_upload(upload, quiet=True)
            raise
        finally:
            executor.shutdown(wait=True)
        sha256 = digest.hexdigest()
        try:
            sealed = _user_metadata({**metadata, **(seal(size, sha256) if seal else {})})
        except BaseException:
            self._discard(full_key, completed.get("VersionId"))
            raise
        version_id = self._store_checksum(
            key,
            full_key,
            size,
            completed["ETag"],
            completed.get("VersionId"),
            {**sealed, "sha256": sha256},
        )
        return self._verify(key, full_key, size, sha256, version_id)

    def _store_checksum(
        self,
        key: str,
        full_key: str,
        size: int,
        etag: str,
        version_id: str | None,
        metadata: dict[str, str],
    ) -> str | None:
        """Rewrite the completed object's metadata with its sha256, known only now, by a server-side copy.

        S3 fixes user metadata when an upload starts. The other places weighed for the checksum: object tags
        (R2 and others lack them, and stat would need a second request), a sidecar object (two objects per
        archive, not atomic), S3's own SHA256 checksums (for multipart, a checksum of part checksums, not of
        the bytes). The copy runs inside S3, no bytes travel through us. Returns the new version's id, if any.
        """
        source: CopySourceTypeDef = {"Bucket": self.config.bucket, "Key": full_key}
        if version_id:
            source["VersionId"] = version_id
        try:
            if size <= MAX_COPY_OBJECT_SIZE:
                with self._errors("record the checksum of", key):
                    copied = self.client.copy_object(
                        Bucket=self.config.bucket,
                        Key=full_key,
                        CopySource=source,
                        CopySourceIfMatch=etag,
                        MetadataDirective="REPLACE",
                        ContentType="application/octet-stream",
                        Metadata=metadata,
                        **self._write_args(with_storage_class=True),
                    )
                new_version: str | None = copied.get("VersionId")
            else:
                new_version = self._copy_by_parts(key, full_key, size, source, etag, metadata)
        except BaseException:
            self._discard(full_key, version_id)
            raise
        if version_id and new_version and new_version != version_id:
            # On a versioned bucket the copy leaves the checksum-less version behind: the archive twice.
            try:
                self.client.delete_object(Bucket=self.config.bucket, Key=full_key, VersionId=version_id)
            except (ClientError, BotoCoreError) as exc:
                log.warning(
                    "could not remove the intermediate version %s of %s (%s); under Object Lock it stays "
                    "until its retention ends",
                    version_id,
                    full_key,
                    type(exc).__name__,
                )
        return new_version

    def _copy_by_parts(
        self,
        key: str,
        full_key: str,
        size: int,
        source: CopySourceTypeDef,
        etag: str,
        metadata: dict[str, str],
    ) -> str | None:
        upload = self._create_upload(key, full_key, metadata, with_storage_class=True)
        part_size = max(COPY_PART_SIZE, -(-size // MAX_PARTS))
        parts: builtins.list[CompletedPartTypeDef] = []
        try:
            with self._errors("record the checksum of", key):
                for number, start in enumerate(range(0, size, part_size), start=1):
                    end = min(start + part_size, size) - 1
                    copied = self.client.upload_part_copy(
                        Bucket=self.config.bucket,
                        Key=full_key,
                        UploadId=upload.upload_id,
                        PartNumber=number,
                        CopySource=source,
                        CopySourceIfMatch=etag,
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                    parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
                completed = self.client.complete_multipart_upload(
                    Bucket=self.config.bucket,
                    Key=full_key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            self._abort_upload(upload, quiet=True)
            raise
        return completed.get("VersionId")

    def _create_upload(self, key: str, full_key: str, metadata: dict[str, str], *, with_storage_class: bool) -> _Upload:
        with self._errors("start uploading", key):
            created = self.client.create_multipart_upload(
                Bucket=self.config.bucket,
                Key=full_key,
                ContentType="application/octet-stream",
                Metadata=metadata,
                **self._write_args(with_storage_class=with_storage_class),
            )
        log.debug("multipart upload %s started for %s", created["UploadId"], full_key)
        return _Upload(key, full_key, created["UploadId"])

    def _upload_part(self, upload: _Upload, number: int, body: bytearray) -> CompletedPartTypeDef:
        with self._errors("upload", upload.key):
            response = self.client.upload_part(
                Bucket=self.config.bucket,
                Key=upload.full_key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=body,  # type: ignore[arg-type]  # bytes-like is fine; bytes(body) would copy the part
            )
        log.debug("part %d (%d bytes) of %s uploaded", number, len(body), upload.full_key)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _abort_upload(self, upload: _Upload, *, quiet: bool) -> None:
        """Abort; when `quiet`, a failure is remembered for abort_stale_uploads instead of raised."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.config.bucket, Key=upload.full_key, UploadId=upload.upload_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
                return
            if not quiet:
                raise self._storage_error(exc, "abort the unfinished upload of", upload.key) from exc
            self._remember_unaborted(upload, exc)
        except BotoCoreError as exc:
            if not quiet:
                raise self._storage_error(exc, "abort the unfinished upload of", upload.key) from exc
            self._remember_unaborted(upload, exc)
        else:
            self._unaborted.pop(upload.upload_id, None)

    def _remember_unaborted(self, upload: _Upload, exc: Exception) -> None:
        self._unaborted[upload.upload_id] = upload
        log.warning(
            "could not abort the unfinished upload of %s (%s); abort_stale_uploads() will retry it",
            upload.full_key,
            type(exc).__name__,
        )

    def _verify(self, key: str, full_key: str, size: int, sha256: str, version_id: str | None) -> ObjectInfo:
        head = self._head(key, full_key)
        stored_size, stored_sha256 = head["ContentLength"], head.get("Metadata", {}).get("sha256")
        if stored_size != size or stored_sha256 != sha256:
            self._discard(full_key, version_id)
            raise StorageError(
                f"After uploading {key} to {self.url}, S3 reports {stored_size} bytes and sha256 "
                f"{stored_sha256 or 'missing'}; we sent {size} bytes with sha256 {sha256}. It was removed.",
                hint="Another writer may use the same name at the same time, or the S3 service mishandled the "
                "upload. Run the backup again.",
            )
        return ObjectInfo(
            key=key, size=stored_size, modified=head["LastModified"], metadata=dict(head.get("Metadata", {}))
        )

    def _discard(self, full_key: str, version_id: str | None) -> None:
        """Best effort: an upload that failed its checks must not pass for a good archive."""
        args: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            self.client.delete_object(Bucket=self.config.bucket, Key=full_key, **args)
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not remove the failed upload %s (%s)", full_key, type(exc).__name__)

    def _write_args(self, *, with_storage_class: bool) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.config.sse:
            args["ServerSideEncryption"] = self.config.sse
        if self.config.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.config.sse_kms_key_id
        if with_storage_class and self.config.storage_class:
            args["StorageClass"] = self.config.storage_class
        return args

    def _part_size_for(self, number: int) -> int:
        return min(self.config.part_size << ((number - 1) // PARTS_PER_SIZE_STEP), MAX_PART_SIZE)

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

    def _head(self, key: str, full_key: str) -> HeadObjectOutputTypeDef:
        with self._errors("read", key):
            return self.client.head_object(Bucket=self.config.bucket, Key=full_key)

    def _locked(self, key: str, lock: str) -> ObjectLocked:
        return ObjectLocked(
            f"{key} in {self.url} is protected by {lock} and cannot be deleted yet.",
            hint="S3 Object Lock keeps it until its retention date passes (or its legal hold is lifted); "
            "retention will try again on a later run.",
        )

    @contextmanager
    def _errors(self, action: str, key: str | None) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._storage_error(exc, action, key) from exc

    def _endpoint(self) -> str:
        return self.config.endpoint_url or self.client.meta.endpoint_url

    def _storage_error(self, exc: Exception, action: str, key: str | None) -> StorageError:
        """One place that turns botocore's errors into what a person can act on. Never shows a secret."""
        what = f"{key} in {self.url}" if key else self.url
        bucket = self.config.bucket
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            message = error.get("Message", "").rstrip(".")
            if code in _NOT_FOUND_CODES and key is not None:
                return self._not_found(key, code)
            if code == "NoSuchBucket" or (code in _NOT_FOUND_CODES and key is None):
                return StorageError(
                    f"The bucket {bucket} does not exist at {self._endpoint()}.",
                    hint=f"Create the bucket {bucket}, or fix the name in the URL (s3://BUCKET/PREFIX); check that "
                    "S3_ENDPOINT_URL and S3_REGION point at the service that holds it.",
                )
            if code in _AUTH_CODES:
                return StorageError(
                    f"{self._endpoint()} refused our credentials ({code}) when trying to {action} {what}.",
                    hint=self._credentials_hint(),
                )
            if code in _EXPIRED_CODES:
                return StorageError(
                    f"The AWS session credentials have expired or are invalid ({code}) when trying to {action} {what}.",
                    hint="Temporary credentials (AWS_SESSION_TOKEN, an assumed role) last a limited time: renew "
                    "them, or raise the role's session duration for long backups.",
                )
            if code == "403":
                # HEAD answers 403 with no body for bad keys and missing permissions alike; ask with a body.
                code = self._explain_forbidden() or code
                if code in _AUTH_CODES | _EXPIRED_CODES:
                    return self._storage_error(
                        ClientError({"Error": {"Code": code, "Message": ""}}, "HeadObject"), action, key
                    )
            if code in _DENIED_CODES:
                return StorageError(
                    f"Access denied when trying to {action} {what}.",
                    hint="The credentials need s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject, "
                    "s3:AbortMultipartUpload and s3:ListBucketMultipartUploads on this bucket and prefix"
                    + (", and kms:GenerateDataKey and kms:Decrypt on the KMS key" if self.config.sse else "")
                    + "; a bucket policy may also require a particular S3_SSE.",
                )
            if code in _REGION_CODES:
                return StorageError(
                    f"The bucket {bucket} is in another region than {self.client.meta.region_name} ({code}).",
                    hint="Set S3_REGION (or AWS_REGION) to the bucket's region.",
                )
            if code.startswith("KMS"):
                return StorageError(
                    f"KMS refused to encrypt or decrypt {what} ({code}: {message}).",
                    hint="Check S3_SSE_KMS_KEY_ID, that the key is enabled and in the bucket's region, and the "
                    "key policy.",
                )
            if code in _BUSY_CODES:
                return StorageError(
                    f"{self._endpoint()} kept failing ({code}) when trying to {action} {what}, after "
                    f"{self.config.max_attempts} attempts.",
                    hint="The service is overloaded or unwell; run again later.",
                )
            if code == "PreconditionFailed":
                return StorageError(
                    f"{what} changed while we were working on it ({code}).",
                    hint="Another process writes the same name; make sure only one backup job writes there.",
                )
            return StorageError(
                f"S3 refused to {action} {what}: {code or 'error'}: {message}.",
                hint="Check S3_STORAGE_CLASS and S3_SSE are supported by this S3 service, and the bucket's settings.",
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"No usable AWS credentials were found to {action} {what}.",
                hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN (GitHub OIDC, with "
                "`permissions: id-token: write`), or AWS_PROFILE.",
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageError(
                f"Cannot reach the S3 endpoint {self._endpoint()} to {action} {what}: {type(exc).__name__}, "
                f"after {self.config.max_attempts} attempts.",
                hint="Check S3_ENDPOINT_URL (scheme, host and port), the network, and that the service is up.",
            )
        return StorageError(f"S3 failed to {action} {what}: {exc}.", hint="Run again; if it persists, report it.")

    def _credentials_hint(self) -> str:
        credentials = self._session.get_credentials()
        if credentials is not None and credentials.method == "github-oidc":
            return (
                "The credentials came from assuming AWS_ROLE_ARN with GitHub OIDC: check that S3_ENDPOINT_URL "
                "is AWS S3 and the role may use this bucket."
            )
        return (
            "Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a pasted secret with a trailing space or newline "
            "is a common cause), and that S3_ENDPOINT_URL points at the service these keys belong to."
        )

    def _explain_forbidden(self) -> str:
        try:
            self.client.list_objects_v2(Bucket=self.config.bucket, Prefix=self._key_prefix, MaxKeys=1)
        except ClientError as exc:
            return exc.response.get("Error", {}).get("Code", "")
        except BotoCoreError:
            return ""
        return ""

    def _not_found(self, key: str, code: str) -> StorageError:
        # HEAD answers 404 with no body, for a missing key and for a missing bucket alike.
        if code != "NoSuchKey":
            try:
                self.client.head_bucket(Bucket=self.config.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                    return self._storage_error(exc, "read", None)
            except BotoCoreError as exc:
                return self._storage_error(exc, "read", key)
        return ObjectNotFound(f"No object named {key} in {self.url}.")


def _read_part(
    source: BinaryIO, digest: hashlib._Hash, limit: int, pending: Future[Any] | None
) -> tuple[bytearray, bool]:
    """Read up to `limit` bytes (or a chunk beyond) into one buffer; True when the source is exhausted.

    Stops early when the part before, uploading meanwhile, failed: no use reading a dump nobody stores.
    """
    buffer = bytearray(limit + CHUNK_SIZE)  # allocated once: growing it would copy a whole part each time
    filled = 0
    at_end = False
    while filled < limit:
        chunk = source.read(CHUNK_SIZE)
        if not chunk:
            at_end = True
            break
        digest.update(chunk)
        buffer[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
        if pending is not None and pending.done() and (failure := pending.exception()) is not None:
            raise failure
    del buffer[filled:]
    return buffer, at_end


def _user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Caller metadata as S3 can keep it: lowercase names, printable ASCII values; sha256 is ours."""
    result: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if name == "sha256":
            continue
        if not _METADATA_NAME.fullmatch(name) or not value.isascii() or not value.isprintable():
            raise StorageError(
                f"S3 cannot store the metadata {name}={value!r}.",
                hint="Use lowercase names of letters, digits, '.', '_' and '-', and printable ASCII values.",
            )
        result[name] = value
    if sum(len(name) + len(value) for name, value in result.items()) + 6 + 64 > MAX_METADATA_BYTES:
        raise StorageError("The archive's metadata is larger than the 2 KB S3 allows.")
    return result


def _active_lock(head: HeadObjectOutputTypeDef) -> str:
    """What holds the object, or "" when deleting is allowed. Only visible with s3:GetObjectRetention."""
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return "a legal hold"
    until = head.get("ObjectLockRetainUntilDate")
    if until is not None and until > datetime.now(UTC):
        mode = head.get("ObjectLockMode", "retention")
        return f"Object Lock ({mode} until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
    return ""


class _ObjectReader(io.RawIOBase):
    """GetObject's body as a raw stream; a connection that drops mid-object is resumed from where it broke."""

    def __init__(self, storage: S3Storage, key: str, full_key: str, response: Any) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._full_key = full_key
        self._body = response["Body"]
        # The resumed range must come from the same object, not from one written meanwhile.
        self._etag: str = response["ETag"]
        self._offset = 0
        self._resumes_left = storage.config.max_attempts - 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            try:
                data: bytes = self._body.read(len(view))
                break
            except BotoCoreError as exc:
                if self._resumes_left <= 0:
                    raise self._storage._storage_error(exc, "read", self._key) from exc
                self._resumes_left -= 1
                log.warning("reading %s broke off at byte %d (%s); resuming", self._full_key, self._offset, exc)
                self._resume()
        view[: len(data)] = data
        self._offset += len(data)
        return len(data)

    def readall(self) -> bytes:
        # io's default reads 8 KiB at a time: a thousand calls into botocore per MiB.
        chunks = []
        buffer = bytearray(CHUNK_SIZE)
        while count := self.readinto(buffer):
            chunks.append(bytes(buffer[:count]))
        return b"".join(chunks)

    def _resume(self) -> None:
        with suppress(Exception):
            self._body.close()
        with self._storage._errors("read", self._key):
            response = self._storage.client.get_object(
                Bucket=self._storage.config.bucket,
                Key=self._full_key,
                Range=f"bytes={self._offset}-",
                IfMatch=self._etag,
            )
        self._body = response["Body"]

    def close(self) -> None:
        if not self.closed:
            with suppress(Exception):
                self._body.close()
        super().close()
