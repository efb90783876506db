"""Writing to S3 as a stream, in constant memory: parts of `part_size` go up while the next one is read (about
two parts in memory whatever the archive's size, nothing spooled to disk); a stream that ends within the first
part goes up in one PutObject. Every request carries its body's MD5 (Content-MD5), which the store checks
before it keeps the bytes: what it holds is what we sent, proven without reading it back. The sha256, known only
at the end, goes into the object's tags (chrono_ci.storage.s3.tagging) or, where tags are not available, is
stored by a server-side copy; the result is read back before it counts. Any failure aborts the multipart upload;
an abort that fails (the server is down) is remembered for `abort_stale_uploads()`.

S3Uploads is a part of S3Storage (chrono_ci.storage.s3.store), kept apart because it is read apart.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from chrono_ci.errors import StorageError
from chrono_ci.storage.base import ObjectInfo, Seal
from chrono_ci.storage.s3.config import (
    COPY_PART_SIZE,
    MAX_COPY_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    PARTS_PER_SIZE_STEP,
)
from chrono_ci.storage.s3.parts import collect, content_md5, multipart_etag, part_md5, read_part, storable_metadata
from chrono_ci.storage.s3.retry import CLEANUP_DEADLINE, RetryPolicy
from chrono_ci.storage.s3.tagging import ARCHIVED_CLASSES, S3Records, tag_set

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CopySourceTypeDef,
        TagTypeDef,
    )

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingUpload:
    key: str  # as the caller named it
    full_key: str
    upload_id: str


class S3Uploads(S3Records):
    _unaborted: dict[str, PendingUpload]
    retry: RetryPolicy

    def _put_single(
        self, key: str, full_key: str, body: bytearray, sha256: str, metadata: dict[str, str]
    ) -> ObjectInfo:
        with self._errors("upload", key):
            response = self.client.put_object(
                Bucket=self.config.bucket,
                Key=full_key,
                # botocore takes any bytes-like body; bytes(body) would copy a whole part.
                Body=body,  # type: ignore[arg-type]
                ContentMD5=content_md5(part_md5(body)),
                ContentType="application/octet-stream",
                Metadata={**metadata, "sha256": sha256},
                **self._write_args(with_storage_class=True),
            )
        proof = "the store checked the MD5 of the bytes it took (Content-MD5)"
        return self._verify(key, full_key, len(body), sha256, response.get("VersionId"), proof)

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
        # Without tags, the storage class is left to the copy below: CopyObject cannot read an archived class
        # (GLACIER, DEEP_ARCHIVE), so the parts go up in the default class and the copy moves the object.
        by_tags = self._tags_usable is not False and self.config.storage_class not in ARCHIVED_CLASSES
        upload = self._create_upload(key, full_key, metadata, with_storage_class=by_tags)
        parts: builtins.list[CompletedPartTypeDef] = []
        part_md5s: builtins.list[bytes] = []
        size = 0
        pending: Future[tuple[CompletedPartTypeDef, bytes]] | None = None
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chrono-s3-part")
        try:
            buffer, at_end, number = handover.pop(), False, 1
            while True:
                if pending is not None:
                    collect(pending.result(), parts, part_md5s)
                pending = executor.submit(self._upload_part, upload, number, buffer)
                size += len(buffer)
                if at_end:
                    break
                number += 1
                buffer, at_end = read_part(source, digest, self._part_size_for(number), pending)
                if not buffer:
                    break
                if number > MAX_PARTS:
                    raise StorageError(
                        f"{key} is larger than one S3 multipart upload can hold ({MAX_PARTS} parts).",
                        hint="Raise the S3 part size, or back up less per archive (per database or schema).",
                    )
            collect(pending.result(), parts, part_md5s)
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
            sealed = storable_metadata({**metadata, **(seal(size, sha256) if seal else {})})
        except BaseException:
            self._discard(full_key, completed.get("VersionId"))
            raise
        proof = f"the store checked the MD5 of each of the {len(parts)} parts it took (Content-MD5)"
        if completed["ETag"].strip('"') == multipart_etag(part_md5s):
            # Stores whose ETag is not an MD5 (AWS with SSE-KMS, some S3-compatible ones) still checked each part.
            proof += "; its ETag is the MD5 of those parts' MD5s"
        record = {**sealed, "sha256": sha256}
        # Tags carry only what the upload's metadata could not: what is known once every byte is stored.
        late = tag_set({name: value for name, value in record.items() if name not in metadata}) if by_tags else None
        version_id = self._record_checksum(
            key, full_key, size, completed["ETag"], completed.get("VersionId"), record, tags=late
        )
        return self._verify(key, full_key, size, sha256, version_id, proof)

    def _record_checksum(
        self,
        key: str,
        full_key: str,
        size: int,
        etag: str,
        version_id: str | None,
        sealed: dict[str, str],
        *,
        tags: builtins.list[TagTypeDef] | None,
    ) -> str | None:
        """Complete the object's record with what is known only now (sha256, size, signature): in `tags` (what
        the upload's metadata lacks) when given and the store takes them, else by the server-side copy of the
        whole `sealed` record. Returns the id of the version that holds it."""
        if tags is not None:
            try:
                if self._put_tags(key, full_key, version_id, tags):
                    return version_id
            except BaseException:
                self._discard(full_key, version_id)
                raise
        return self._store_checksum(key, full_key, size, etag, version_id, sealed)

    def _store_checksum(
        self,
        key: str,
        full_key: str,
        size: int,
        etag: str,
        version_id: str | None,
        metadata: dict[str, str],
    ) -> str | None:
        """Rewrite the completed object's metadata with its sha256, known only now, by a server-side copy: the
        fallback for stores without tags (R2, among others; see docs/storage.md).

        S3 fixes user metadata when an upload starts. The other places weighed for the checksum: a sidecar object
        (two objects per archive, not atomic), S3's own SHA256 checksums (for multipart, a checksum of part
        checksums, not of the bytes). The copy runs inside S3, no bytes travel through us, but the store rewrites
        the whole object. Returns the new version's id, if any.
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

    def _create_upload(
        self, key: str, full_key: str, metadata: dict[str, str], *, with_storage_class: bool
    ) -> PendingUpload:
        with self._errors("start uploading", key):
            created = self.client.create_multipart_upload(
                Bucket=self.config.bucket,
                Key=full_key,
                ContentType="application/octet-stream",
                Metadata=metadata,
                **self._write_args(with_storage_class=with_storage_class),
            )
        log.debug("multipart upload %s started for %s", created["UploadId"], full_key)
        return PendingUpload(key, full_key, created["UploadId"])

    def _upload_part(self, upload: PendingUpload, number: int, body: bytearray) -> tuple[CompletedPartTypeDef, bytes]:
        # Hashed in this worker thread (hashlib releases the GIL), while the next part is being read.
        md5 = part_md5(body)
        with self._errors("upload", upload.key):
            response = self.client.upload_part(
                Bucket=self.config.bucket,
                Key=upload.full_key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=body,  # type: ignore[arg-type]  # bytes-like is fine; bytes(body) would copy the part
                ContentMD5=content_md5(md5),
            )
        log.debug("part %d (%d bytes) of %s uploaded", number, len(body), upload.full_key)
        return {"PartNumber": number, "ETag": response["ETag"]}, md5

    def _abort_upload(self, upload: PendingUpload, *, quiet: bool) -> None:
        """Abort; when `quiet`, a failure is remembered for abort_stale_uploads instead of raised.

        A quiet abort follows a failure, often one that outlasted the retry deadline: it gets a short deadline of
        its own, and what it cannot abort is recorded for the next run instead of holding this one up.
        """
        try:
            with self.retry.at_most(CLEANUP_DEADLINE if quiet else self.retry.deadline):
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

    def _remember_unaborted(self, upload: PendingUpload, exc: Exception) -> None:
        self._unaborted[upload.upload_id] = upload
        log.warning(
            "could not abort the unfinished upload of %s (%s); abort_stale_uploads() will retry it",
            upload.full_key,
            type(exc).__name__,
        )

    def _verify(
        self, key: str, full_key: str, size: int, sha256: str, version_id: str | None, proof: str
    ) -> ObjectInfo:
        """The record read back the way every reader reads it (`_info`), compared with what we sent."""
        info = self._info(key, full_key)
        stored_size, stored_sha256 = info.size, info.metadata.get("sha256")
        if stored_size != size or stored_sha256 != sha256:
            self._discard(full_key, version_id)
            raise StorageError(
                f"After uploading {key} to {self.url}, S3 reports {stored_size} bytes and sha256 "
                f"{stored_sha256 or 'missing'}; we sent {size} bytes with sha256 {sha256}. It was removed.",
                hint="Another writer may use the same name at the same time, or the S3 service mishandled the "
                "upload. Run the backup again.",
            )
        return ObjectInfo(key=key, size=info.size, modified=info.modified, metadata=info.metadata, proof=proof)

    def _discard(self, full_key: str, version_id: str | None) -> None:
        """Best effort: an upload that failed its checks must not pass for a good archive."""
        args: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            with self.retry.at_most(CLEANUP_DEADLINE):
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
