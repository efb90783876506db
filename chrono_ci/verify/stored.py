"""The integrity check of an archive kept nowhere but in a store that proved, as it took them, that the bytes it
holds are the ones sent (S3: the MD5 of every part, checked by the store before it keeps it).

Downloading the archive again would prove nothing more about those bytes: they are the compressor's (or the
encryptor's) own output, whose sha256, size and trailer the stream measured as they went by. What this check
adds is that the record read back from the store says the same.
"""

from __future__ import annotations

from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.storage.base import ObjectInfo
from chrono_ci.verify.integrity import Check, IntegrityReport


def proven_by_store(name: str, stored: ObjectInfo, record: ArchiveRecord, *, encrypted: bool) -> IntegrityReport:
    """The check of `stored` (what the store reported and its record read back) against what the stream saw."""
    report = IntegrityReport(file=name)
    recorded = stored.metadata.get("sha256")
    report.checks.append(
        Check("checksum", True, f"sha256 {recorded}, as streamed; {stored.proof} (not downloaded again)")
        if recorded == record.sha256
        else Check("checksum", False, f"the store's record says sha256 {recorded}, the stream {record.sha256}")
    )
    report.checks.append(
        Check("size", True, f"{stored.size} bytes, as streamed")
        if stored.size == record.size_bytes
        else Check("size", False, f"{stored.size} bytes in the store, {record.size_bytes} streamed")
    )
    output = "the encryptor's" if encrypted else f"the {record.compression} compressor's"
    report.checks.append(
        Check(
            "decryption" if encrypted else "decompression",
            True,
            f"the stored bytes are {output} own output, as streamed, not read back",
        )
    )
    report.checks.append(
        Check("trailer", True, "the dump's closing line was seen as it streamed (the stream fails without it)")
    )
    return report
