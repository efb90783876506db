"""The part of an object's record known only once its bytes are all stored (the sha256, the size, the signature),
kept in object tags instead of a server-side copy that rewrites the object's metadata; and the one reader of an
object's record (`_info`: HEAD, and its tags when the record went there), which stat and the check after an
upload share.

S3 fixes user metadata when an upload starts; tags can be set afterwards (PutObjectTagging) without touching the
bytes. A store without tags (or credentials without s3:PutObjectTagging) is noticed on the first upload of a
run, which then falls back to the copy, and so does every later upload of that run. An object's metadata and
its tags are read as one record by `with_tags`: the metadata first, and only when it lacks the sha256 (an
object whose record went to tags) the tags, for the keys the metadata does not have. Tag values are as
untrusted as metadata: chrono_ci/archive/provenance.py judges what they claim, and a signature covers them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chrono_ci.storage.base import SEALED_NAMES, ObjectInfo
from chrono_ci.storage.s3.errors import S3ErrorTranslation

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef, TagTypeDef

SHA256_KEY = "sha256"  # one of SEALED_NAMES
MAX_TAGS = 10  # AWS's limit per object
MAX_TAG_VALUE = 256
# Archived classes cannot be the source of the fallback copy: their objects are not readable until restored.
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
_GONE_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket", "NoSuchVersion"})


class TagsUnavailable(Exception):
    """The store has no object tags, or these credentials may not read them."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class S3Records(S3ErrorTranslation):
    """A part of S3Storage (chrono_ci.storage.s3.store): writing the record's end to tags, reading records."""

    _warn: Callable[[str], None]
    # Whether this store took the record's end in tags: None until the first multipart upload of the run tries.
    _tags_usable: bool | None
    _tags_unreadable: bool  # warned once that tags could not be read

    def _put_tags(self, key: str, full_key: str, version_id: str | None, tags: list[TagTypeDef]) -> bool:
        """Tag the object (the version the upload made); False when the store or the credentials do not take
        tags, or (asked once per run) do not give them back, which this run then no longer tries. Any other
        failure raises."""
        version: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            self.client.put_object_tagging(Bucket=self.config.bucket, Key=full_key, Tagging={"TagSet": tags}, **version)
            if self._tags_usable is None:
                # s3:PutObjectTagging without s3:GetObjectTagging would write records nobody can read back.
                self._tags_of(key, full_key, version_id)
        except TagsUnavailable as unavailable:
            self._give_up_tags(unavailable.code)
            return False
        except ClientError as exc:
            if tags_unavailable(exc):
                self._give_up_tags(_code(exc))
                return False
            raise self._storage_error(exc, "record the checksum of", key) from exc
        except BotoCoreError as exc:
            raise self._storage_error(exc, "record the checksum of", key) from exc
        self._tags_usable = True
        return True

    def _give_up_tags(self, code: str) -> None:
        self._tags_usable = False
        self._warn(
            f"{self._endpoint()} did not take object tags ({code}): the sha256 of each archive of this run is "
            "recorded by a server-side copy of the object instead (s3:PutObjectTagging and s3:GetObjectTagging "
            "avoid it, on stores that have tags)"
        )

    def _info(self, key: str, full_key: str) -> ObjectInfo:
        """An object's size, time and record: its metadata, completed by its tags when the record went there."""
        head = self._head(key, full_key)
        metadata = dict(head.get("Metadata", {}))
        if needs_tags(metadata):
            metadata = with_tags(metadata, self._readable_tags(key, full_key, head.get("VersionId")))
        return ObjectInfo(key=key, size=head["ContentLength"], modified=head["LastModified"], metadata=metadata)

    def _readable_tags(self, key: str, full_key: str, version_id: str | None) -> dict[str, str]:
        """The tags of the version HEAD saw; none when the store has no tags or we may not read them: its record
        is then incomplete, and such an object is never trusted (chrono_ci/archive/provenance.py)."""
        try:
            return self._tags_of(key, full_key, version_id)
        except TagsUnavailable as unavailable:
            if not self._tags_unreadable:
                self._tags_unreadable = True
                self._warn(
                    f"cannot read object tags at {self._endpoint()} ({unavailable.code}): archives whose sha256 is "
                    "recorded there are not trusted (never restored, counted or deleted) until the credentials "
                    "have s3:GetObjectTagging"
                )
            return {}

    def _tags_of(self, key: str, full_key: str, version_id: str | None) -> dict[str, str]:
        """An object version's tags; TagsUnavailable when the store has none or we may not read them."""
        version: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            tagging = self.client.get_object_tagging(Bucket=self.config.bucket, Key=full_key, **version)
        except ClientError as exc:
            if tags_unavailable(exc) and _code(exc) not in _GONE_CODES:
                raise TagsUnavailable(_code(exc)) from exc
            raise self._storage_error(exc, "read the tags of", key) from exc
        except BotoCoreError as exc:
            raise self._storage_error(exc, "read the tags of", key) from exc
        return {tag["Key"]: tag["Value"] for tag in tagging.get("TagSet", [])}

    def _head(self, key: str, full_key: str) -> HeadObjectOutputTypeDef:
        with self._errors("read", key):
            return self.client.head_object(Bucket=self.config.bucket, Key=full_key)


def tag_set(sealed: Mapping[str, str]) -> list[TagTypeDef] | None:
    """The tags that carry `sealed` (sha256 included), or None when they cannot (too many, too long, or a name
    the reader would not take back from tags)."""
    if len(sealed) > MAX_TAGS or any(len(value) > MAX_TAG_VALUE for value in sealed.values()):
        return None
    if not set(sealed) <= SEALED_NAMES:
        return None
    return [{"Key": name, "Value": value} for name, value in sealed.items()]


def with_tags(metadata: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, str]:
    """One record from an object's metadata and its tags: only the names a seal writes come from the tags, and
    a tag never overrides what the metadata says."""
    return {**{name: value for name, value in tags.items() if name in SEALED_NAMES}, **metadata}


def needs_tags(metadata: Mapping[str, str]) -> bool:
    """Whether the record's end (the sha256) is to be looked for in the tags."""
    return SHA256_KEY not in metadata


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code") or "refused"


def tags_unavailable(exc: ClientError) -> bool:
    """The store answered that tags are not for us (not implemented, not allowed): not a failure to retry."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return 400 <= status < 500 or status == 501


def content_md5_instead(params: dict[str, Any], **_: Any) -> None:
    """botocore's before-call hook for PutObjectTagging under S3_CHECKSUMS=when_required: the integrity header that
    operation must carry is Content-MD5, as before boto3 1.36, not the CRC32 header that B2, Google Cloud Storage
    and older MinIO refuse (botocore adds one to every operation that requires a checksum, in either mode)."""
    checksum = params.get("context", {}).get("checksum", {})
    checksum.pop("request_algorithm", None)
    checksum.pop("request_algorithm_header", None)
    body = params.get("body") or b""
    digest = hashlib.md5(body if isinstance(body, bytes) else body.encode(), usedforsecurity=False).digest()
    params["headers"]["Content-MD5"] = base64.b64encode(digest).decode("ascii")
