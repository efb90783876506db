"""Reading an S3 object as a stream: GetObject's body as a raw stream, and a connection that drops mid-object
resumed from where it broke, from the same object (its ETag), never from one written meanwhile."""

from __future__ import annotations

import io
import logging
from contextlib import suppress
from typing import Any

from botocore.exceptions import BotoCoreError

from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.storage.s3.errors import S3ErrorTranslation

log = logging.getLogger(__name__)

MAX_RESUMES = 4  # a connection that keeps breaking mid-object, after the server answered, is not an outage


class ObjectReader(io.RawIOBase):
    """GetObject's body as a raw stream; a connection that drops mid-object is resumed from where it broke."""

    def __init__(self, storage: S3ErrorTranslation, key: str, full_key: str, response: Any) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._full_key = full_key
        self._body = response["Body"]
        # The resumed range must come from the same object, not from one written meanwhile.
        self._etag: str = response["ETag"]
        self._offset = 0
        # Each resume's GetObject is itself retried through an outage (chrono_ci.storage.s3.retry).
        self._resumes_left = MAX_RESUMES

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
