"""The storage protocol: a handful of operations on streams, shared by every backend.

A backend never holds a whole archive in memory. `put` reads its source to the end; if reading raises (the
dump failed, the process was told to stop), nothing is left under the key and the exception propagates
unchanged. Every backend raises `ObjectNotFound` for a key that is not there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol

from chrono_ci.errors import ObjectNotFound

__all__ = ["CHUNK_SIZE", "SEALED_NAMES", "ObjectInfo", "ObjectNotFound", "Seal", "Storage"]

# 1 MiB reads keep Python's per-call overhead negligible next to pg_dump and the compressor.
CHUNK_SIZE = 1 << 20


# Metadata that depends on the stored bytes, known only once they are all read: called with their size and
# sha256, its result is recorded along with the checksum (S3), so that the object describes itself whole.
Seal = Callable[[int, str], Mapping[str, str]]
# The names a seal may write, with the sha256: where a store keeps them apart from the object's other metadata
# (S3's object tags), only these are read back into its record, so that whoever may only tag cannot add others.
SEALED_NAMES = frozenset({"sha256", "chrono-size", "chrono-signature"})


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    # How the store itself proved, as it took them, that the bytes it holds are the ones sent (S3: the MD5 of
    # each part); "" when it did not, and the bytes must be read back to be proven.
    proof: str = ""


class Storage(Protocol):
    @property
    def url(self) -> str:
        """Where this storage points, for people: never contains a secret."""
        ...

    def put(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None, seal: Seal | None = None
    ) -> ObjectInfo:
        """Store everything `source.read()` yields under `key`, atomically: all of it or nothing."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object; the caller closes it."""
        ...

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, in no particular order."""
        ...

    def stat(self, key: str) -> ObjectInfo: ...

    def delete(self, key: str) -> None: ...
