"""An S3 location and how to write there: s3://BUCKET/PREFIX parsed and checked, the S3_* settings (endpoint,
region, server-side encryption, storage class) checked, and S3's own limits. No boto3 here: reading a setting
must not load it.

No message below repeats the URL or a part of it: credentials pasted into it (s3://KEY:SECRET@bucket, with a /
in the secret) would land in the bucket or prefix the message quotes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from chrono_ci.errors import ConfigError

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
# Seconds one request is retried through an outage before the backup gives up (S3_RETRY_DEADLINE); 0: no retry.
DEFAULT_RETRY_DEADLINE = 300.0
# botocore's request checksums (S3_CHECKSUMS). Since 1.36 it sends CRC32 headers by default (when_supported),
# which R2, B2, Google Cloud Storage and MinIO before 2025 refuse; chrono-ci proves each archive by its sha256.
ChecksumMode = Literal["when_required", "when_supported"]
CHECKSUM_MODES: tuple[ChecksumMode, ...] = ("when_required", "when_supported")
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
    retry_deadline: float = DEFAULT_RETRY_DEADLINE  # per request, UploadPart included (chrono_ci.storage.s3.retry)
    checksums: ChecksumMode = "when_required"
    # A hung server (it accepts connections and never answers) is noticed after these, and the request retried.
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        _check_bucket_name(self.bucket)
        object.__setattr__(self, "prefix", _normalise_prefix(self.prefix))
        object.__setattr__(self, "endpoint_url", check_endpoint(self.endpoint_url, "endpoint_url"))
        sse = check_sse(self.sse, self.sse_kms_key_id, "sse", "sse_kms_key_id")
        object.__setattr__(self, "sse", sse)
        object.__setattr__(self, "storage_class", check_storage_class(self.storage_class, "storage_class"))
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"S3 part_size={self.part_size} is outside what S3 accepts.",
                hint=f"Use between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB) bytes.",
            )
        if self.retry_deadline < 0:
            raise ConfigError(f"S3 retry_deadline={self.retry_deadline} must be 0 (no retry) or more seconds.")
        if self.checksums not in CHECKSUM_MODES:
            raise ConfigError(f"S3 checksums={self.checksums!r} must be one of {', '.join(CHECKSUM_MODES)}.")
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


def check_endpoint(endpoint: str | None, name: str) -> str | None:
    if not endpoint:
        return None
    parts = endpoint.split("://", 1)
    if len(parts) != 2 or parts[0].lower() not in ("http", "https") or not parts[1].strip("/"):
        raise ConfigError(
            f"{name} is not an http:// or https:// URL.",
            hint="Give the S3 endpoint's base URL, e.g. https://ACCOUNT.r2.cloudflarestorage.com.",
        )
    return endpoint.rstrip("/")


def check_sse(sse: str | None, kms_key_id: str | None, sse_name: str, kms_name: str) -> str | None:
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


def check_storage_class(storage_class: str | None, name: str) -> str | None:
    if not storage_class:
        return None
    if storage_class.upper() not in STORAGE_CLASSES:
        raise ConfigError(
            f"{name}={storage_class!r} is not an S3 storage class.",
            hint="Use one of " + ", ".join(sorted(STORAGE_CLASSES)) + ", or leave it unset for STANDARD.",
        )
    return storage_class.upper()


def env_value(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None
