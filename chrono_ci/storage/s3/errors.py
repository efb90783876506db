"""One place that turns botocore's errors into StorageErrors a person can act on, never showing a secret: nothing
above chrono_ci.storage.s3 sees a botocore type.

S3ErrorTranslation is a part of S3Storage (chrono_ci.storage.s3.store), kept apart because it is read apart: it
needs the store's client, config and session, declared below.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from chrono_ci.errors import ObjectNotFound, StorageError
from chrono_ci.storage.s3.config import S3Config
from chrono_ci.storage.s3.retry import RetryDeadlinePassed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "InvalidToken"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
_REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocationConstraint"})
# The store computed a different digest of what it received than the one we sent with it (Content-MD5).
_DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"})
_BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "502", "503", "504"}
)


class ObjectLocked(StorageError):
    """S3 Object Lock (retention or legal hold) protects the object: it cannot be deleted yet."""


class S3ErrorTranslation:
    config: S3Config
    client: S3Client
    _session: boto3.Session
    _key_prefix: str

    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...

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
            if code in _DIGEST_CODES:
                return StorageError(
                    f"{self._endpoint()} received other bytes than we sent when trying to {action} {what} ({code}): "
                    "they were altered on the way, and it refused them.",
                    hint="Something between chrono-ci and the store (a proxy, a faulty network card or memory) "
                    "changed the data; nothing altered was kept. Run the backup again; if it recurs, check the "
                    "network path.",
                )
            if code in _BUSY_CODES:
                return StorageError(
                    f"{self._endpoint()} failed ({code}) when trying to {action} {what}, and retrying is off.",
                    hint="The service is overloaded or unwell; run again later. S3_RETRY_DEADLINE=0 turned "
                    "retrying off: set it to seconds (300 by default) to ride out such failures.",
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
        if isinstance(exc, RetryDeadlinePassed) and exc.never_answered:
            return StorageError(
                f"{exc.endpoint} never answered in {exc.elapsed:.0f} s ({exc.attempts} attempts) when trying to "
                f"{action} {what}; the last failure: {exc.cause}.",
                hint="Check S3_ENDPOINT_URL (scheme, host and port), the network and that the service is up, then "
                f"run again. Until a store has answered once, chrono-ci retries for at most {exc.deadline:.0f} s; "
                "after that, S3_RETRY_DEADLINE applies.",
            )
        if isinstance(exc, RetryDeadlinePassed):
            return StorageError(
                f"{exc.endpoint} did not work for {exc.elapsed:.0f} s ({exc.attempts} attempts) when trying to "
                f"{action} {what}; the last failure: {exc.cause}.",
                hint=f"chrono-ci retries S3 for S3_RETRY_DEADLINE ({exc.deadline:.0f} s) and then gives up. Check "
                "that the service is up and reachable and that S3_ENDPOINT_URL is right, then run again; raise "
                "S3_RETRY_DEADLINE to ride out longer outages.",
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            retrying = (
                ""
                if self.config.retry_deadline > 0
                else " S3_RETRY_DEADLINE=0 turned retrying off: set it to seconds to ride out an outage."
            )
            return StorageError(
                f"Cannot reach the S3 endpoint {self._endpoint()} to {action} {what}: {type(exc).__name__}.",
                hint="Check S3_ENDPOINT_URL (scheme, host and port), the network, and that the service is up."
                + retrying,
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
