"""The stored bytes of a new archive kept only in a store that proved, as it took them, that they are the ones
sent (S3: the MD5 of every part, checked by the store before it keeps it).

Downloading the archive again would prove nothing more about those bytes: their sha256 and size were measured
as they went by, and their decompression was proven in the stream (chrono_ci/pipeline/roundtrip.py). What this
check adds is that the record the store gives back says the same.
"""

from __future__ import annotations

from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.storage.base import ObjectInfo
from chrono_ci.verify.integrity import Check


def stored_checksum(stored: ObjectInfo, record: ArchiveRecord) -> Check:
    """The "checksum" check of check_written for `stored`: what the store reported, and its record read back,
    against the size and sha256 computed in the stream."""
    recorded = stored.metadata.get("sha256")
    if stored.size != record.size_bytes:
        return Check("checksum", False, f"{stored.size} bytes in the store, {record.size_bytes} streamed")
    if recorded != record.sha256:
        return Check("checksum", False, f"the store's record says sha256 {recorded}, the stream {record.sha256}")
    return Check("checksum", True, f"sha256 {recorded}, as streamed; {stored.proof} (not downloaded again)")
