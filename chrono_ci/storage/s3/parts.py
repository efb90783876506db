"""The pieces a stream is uploaded in, apart from the requests: a part read into one buffer (and hashed for the
archive's sha256 on the way), each part's MD5 (the Content-MD5 the store checks) and the multipart ETag they add up
to, and the metadata S3 can keep."""

from __future__ import annotations

import base64
import builtins
import hashlib
import re
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, BinaryIO

from chrono_ci.errors import StorageError
from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.storage.s3.config import MAX_METADATA_BYTES

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


def collect(
    done: tuple[CompletedPartTypeDef, bytes], parts: builtins.list[CompletedPartTypeDef], md5s: builtins.list[bytes]
) -> None:
    part, md5 = done
    parts.append(part)
    md5s.append(md5)


def part_md5(body: bytearray) -> bytes:
    # Not for security: the integrity header S3 checks, and the parts of its multipart ETag.
    return hashlib.md5(body, usedforsecurity=False).digest()


def content_md5(md5: bytes) -> str:
    return base64.b64encode(md5).decode("ascii")


def multipart_etag(part_md5s: builtins.list[bytes]) -> str:
    """The ETag S3 gives a multipart object whose ETag is an MD5: that of the parts' MD5s, and their count."""
    return f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"


def read_part(
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


def storable_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
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


_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
