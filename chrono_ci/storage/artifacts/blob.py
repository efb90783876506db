"""Blob storage, where an artifact's bytes go: Azure block-blob blocks sent to a signed URL as the archive is
read (one block in memory at a time), committed by a block list with the artifact's media type, retried as the
Azure SDK retries; and the download of an artifact, spooled to an anonymous temp file and checked against the
service's digest and size.

BlobTransfer is a part of ArtifactStorage (chrono_ci.storage.artifacts.store), kept apart because it is read apart.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import IO
from xml.sax.saxutils import escape as xml_escape

from chrono_ci.errors import StorageError
from chrono_ci.storage.artifacts.transport import (
    NETWORK_HINT,
    TRANSPORT_ERRORS,
    HttpTransport,
    Response,
    describe_transport_error,
)
from chrono_ci.storage.artifacts.twirp import Artifact
from chrono_ci.storage.base import CHUNK_SIZE

# The upload toolkit's buffer size; also what keeps memory bounded, since one block is held at a time.
DEFAULT_BLOCK_SIZE = 8 << 20
# Azure block-blob limits (service version >= 2019-12-12).
MAX_BLOCK_SIZE = 4000 << 20
MAX_BLOCKS = 50_000
# Sent on every blob call: any version >= 2019-12-12 takes blocks of up to 4000 MiB.
AZURE_API_VERSION = "2023-11-03"
# What the Azure SDK's retry policy retries on blob calls.
BLOB_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _BlobStatus(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class BlockSink:
    """Where an artifact's bytes go: hashed, counted, cut into blocks, each sent by Put Block when full."""

    def __init__(self, storage: BlobTransfer, upload_url: str, content_type: str) -> None:
        self._storage = storage
        self._url = upload_url
        self._content_type = content_type
        self._separator = "&" if urllib.parse.urlsplit(upload_url).query else "?"
        self._buffer = bytearray()
        # Azure wants every block id of a blob to have the same length: a random prefix, then the index.
        self._prefix = uuid.uuid4().hex
        self._block_ids: list[str] = []
        self._aborted = False
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._aborted:
            return
        self.sha256.update(data)
        self.size += len(data)
        self._buffer += data
        block_size = self._storage._block_size
        while len(self._buffer) >= block_size:
            block = bytes(memoryview(self._buffer)[:block_size])
            del self._buffer[:block_size]
            self._put_block(block)

    def abort(self) -> None:
        self._aborted = True
        self._buffer = bytearray()

    def commit(self) -> None:
        if self._buffer:
            self._put_block(bytes(self._buffer))
            self._buffer = bytearray()
        body = (
            '<?xml version="1.0" encoding="utf-8"?><BlockList>'
            + "".join(f"<Latest>{xml_escape(block_id)}</Latest>" for block_id in self._block_ids)
            + "</BlockList>"
        ).encode()
        self._storage._blob_call(
            "Put Block List",
            "PUT",
            f"{self._url}{self._separator}comp=blocklist",
            body,
            {
                "Content-Type": "application/xml",
                "Content-Length": str(len(body)),
                # What the download will be served as: the clients unzip only a zip type.
                "x-ms-blob-content-type": self._content_type,
            },
        )

    def _put_block(self, block: bytes) -> None:
        index = len(self._block_ids)
        if index >= MAX_BLOCKS:
            raise StorageError(
                f"The archive needs more than {MAX_BLOCKS} blocks of {self._storage._block_size} bytes, the "
                "blob service's limit.",
                hint="Use a larger artifact block size (up to 4000 MiB), or store archives this large in S3.",
            )
        block_id = base64.b64encode(f"{self._prefix}{index:016d}".encode()).decode()
        self._storage._blob_call(
            f"Put Block {index}",
            "PUT",
            f"{self._url}{self._separator}comp=block&blockid={urllib.parse.quote(block_id, safe='')}",
            block,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(block))},
        )
        self._block_ids.append(block_id)


def _describe_blob_error(response: Response) -> str:
    code = response.headers.get("x-ms-error-code") if response.headers else None
    if not code:
        match = re.search(rb"<Code>([^<]{1,100})</Code>", response.body)
        code = match.group(1).decode("utf-8", "replace") if match else None
    return f"({response.status}) {response.reason}" + (f" {code}" if code else "")


class BlobTransfer(HttpTransport):
    _block_size: int
    _temp_dir: str | None

    def _blob_call(self, what: str, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> None:
        """A blob write (Put Block, Put Block List), retried like the Azure SDK retries it."""
        headers = {"x-ms-version": AZURE_API_VERSION, **headers}
        error = ""
        for attempt in range(self._attempts):
            try:
                response = self._send(method, url, body, headers, read_limit=1 << 20)
            except TRANSPORT_ERRORS as exc:
                retryable, error = True, self._redact(describe_transport_error(exc))
            else:
                if 200 <= response.status < 300:
                    return
                retryable = response.status in BLOB_RETRYABLE_STATUSES
                error = self._redact(_describe_blob_error(response))
                if response.status == 403:
                    raise StorageError(
                        f"Blob storage refused the artifact upload ({what}): {error}.",
                        hint="The signed upload URL may have expired during a very long upload, or a proxy "
                        "changed the request. Run again.",
                    )
            if not retryable:
                raise StorageError(
                    f"Blob storage refused the artifact upload ({what}): {error}.",
                    hint="Run again; if it persists, report it with this message.",
                )
            if attempt + 1 >= self._attempts:
                raise StorageError(
                    f"Uploading the artifact to blob storage failed ({what}) after {self._attempts} attempts: {error}.",
                    hint="Blob storage may be having trouble (https://www.githubstatus.com); run again "
                    "later. " + NETWORK_HINT,
                )
            delay = self._retry_delay(attempt)
            self._log(f"{what} failed: {error}. Retrying in {delay:.1f} s.")
            time.sleep(delay)

    def _temp_file(self) -> IO[bytes]:
        """An anonymous 0600 temp file: unlinked at once, so gone when closed, even if never closed."""
        try:
            return tempfile.TemporaryFile(dir=self._temp_dir, prefix=".chrono-artifact-")
        except OSError as exc:
            where = self._temp_dir or tempfile.gettempdir()
            raise StorageError(
                f"Cannot create a temporary file in {where}: {exc.strerror or exc}.",
                hint="Make RUNNER_TEMP (or TMPDIR) a writable folder with room for one archive.",
            ) from exc

    def _spool_write(self, spool: IO[bytes], chunk: bytes, name: str) -> None:
        # A full disk is not a network hiccup: it must not be retried as one.
        try:
            spool.write(chunk)
        except OSError as exc:
            raise StorageError(
                f"Cannot spool the artifact {name!r} to {self._temp_dir or tempfile.gettempdir()}: "
                f"{exc.strerror or exc}.",
                hint="Give RUNNER_TEMP (or TMPDIR) room for one archive.",
            ) from exc

    def _download(self, artifact: Artifact, signed_url: str) -> tuple[IO[bytes], str]:
        """The artifact's bytes, spooled to a temp file so that only one chunk is ever in memory, and the
        Content-Type they were served with."""
        spool = self._temp_file()
        try:
            error = ""
            for attempt in range(self._attempts):
                spool.seek(0)
                spool.truncate()
                digest = hashlib.sha256()
                size = 0
                content_type = ""
                try:
                    with self._request("GET", signed_url, None, {"x-ms-version": AZURE_API_VERSION}) as (
                        status,
                        reason,
                        headers,
                        stream,
                    ):
                        if 200 <= status < 300:
                            content_type = headers.get("Content-Type") or ""
                            while chunk := stream.read(CHUNK_SIZE):
                                digest.update(chunk)
                                size += len(chunk)
                                self._spool_write(spool, chunk, artifact.name)
                        else:
                            body = stream.read(1 << 20)
                            raise _BlobStatus(Response(status, reason, headers, body))
                except _BlobStatus as failed:
                    error = self._redact(_describe_blob_error(failed.response))
                    if failed.response.status not in BLOB_RETRYABLE_STATUSES:
                        break
                except TRANSPORT_ERRORS as exc:
                    error = self._redact(describe_transport_error(exc))
                else:
                    expected = artifact.digest.removeprefix("sha256:") if artifact.digest else ""
                    if expected and digest.hexdigest() != expected:
                        error = f"the download's sha256 {digest.hexdigest()} is not the artifact's {expected}"
                    elif artifact.size and size != artifact.size:
                        error = f"downloaded {size} bytes, the artifact has {artifact.size}"
                    else:
                        spool.flush()
                        spool.seek(0)
                        return spool, content_type
                if attempt + 1 < self._attempts:
                    delay = self._retry_delay(attempt)
                    self._log(f"Downloading the artifact {artifact.name!r} failed: {error}. Retrying in {delay:.1f} s.")
                    time.sleep(delay)
            raise StorageError(
                f"Downloading the artifact {artifact.name!r} failed: {error}.",
                hint="Run again; the artifact may have expired or been deleted meanwhile.",
            )
        except BaseException:
            spool.close()
            raise
