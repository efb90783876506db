"""The integrity check the guide promises after every backup and before every restore.

Of an archive read back (`check_archive`, `check_stream`): a full read, its sha256 against the metadata, a complete
decompression (zstd frame checksum or gzip CRC), the dump's trailer, and the raw size and per-table row counts
against what was recorded while the dump streamed. Restore-verification (a real restore into a scratch database)
builds on top of this.

Of a backup just written (`check_written`): the same checks without a second decompression, which already ran as
the archive was written (chrono_ci/pipeline/roundtrip.py); only the stored bytes are read again, against the
sha256 computed in the stream.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.archive.vouching import Provenance
from chrono_ci.config.options import Compression
from chrono_ci.errors import AgeError, AgeKeyError, VerificationFailed
from chrono_ci.pipeline.read import ArchiveContents, Decryptor, read_archive
from chrono_ci.pipeline.roundtrip import RoundTripResult
from chrono_ci.report.console import Reporter
from chrono_ci.report.results import CheckResult, Tested


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: could not be run (nothing recorded to compare with)
    detail: str


# An encrypted archive checked with public keys only (recipients): its age layer cannot be opened here.
_DECRYPTION_UNCHECKED = Check("decryption", None, "not checked: no BACKUP_ENCRYPTION_IDENTITY to decrypt it with")


@dataclass
class IntegrityReport:
    file: str
    checks: list[Check] = field(default_factory=list)
    contents: ArchiveContents | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok is not False for check in self.checks) and bool(self.checks)

    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]

    def tested(self, provenance: Provenance | None = None, restore: Mapping[str, Any] | None = None) -> Tested:
        """This report as a result document's entry (chrono_ci/report/results.py)."""
        checks = tuple(CheckResult(c.name, c.ok, c.detail) for c in self.checks)
        ok = self.ok and (restore is None or restore.get("ok") is True)
        return Tested(self.file, ok, checks, provenance, restore)

    def print(self, reporter: Reporter, *, verdict: bool = True) -> None:
        """Each check on its line (ok, not run, FAIL), then, with `verdict`, the archive's one-line result."""
        for check in self.checks:
            line = f"{check.name}: {check.detail}"
            (reporter.ok if check.ok else reporter.info if check.ok is None else reporter.fail)(line)
        if verdict:
            reporter.line(
                f"{self.file}: {'valid' if self.ok else 'FAILED: ' + ', '.join(c.name for c in self.failed())}"
            )


DecryptorFactory = Callable[[], Decryptor]


def check_archive(
    path: Path,
    compression: Compression,
    record: ArchiveRecord | None,
    *,
    count_rows: bool = True,
    encrypted: bool = False,
    decrypt: DecryptorFactory | None = None,
    profile: str = "postgres",
) -> IntegrityReport:
    try:
        handle = path.open("rb")
    except OSError as exc:
        report = IntegrityReport(file=path.name)
        report.checks.append(Check("readable", False, f"cannot open {path}: {exc.strerror}"))
        return report
    with handle:
        return check_stream(
            handle,
            path.name,
            compression,
            record,
            count_rows=count_rows,
            encrypted=encrypted,
            decrypt=decrypt,
            profile=profile,
        )


def check_stream(
    handle: IO[bytes],
    name: str,
    compression: Compression,
    record: ArchiveRecord | None,
    *,
    count_rows: bool = True,
    encrypted: bool = False,
    decrypt: DecryptorFactory | None = None,
    profile: str = "postgres",
) -> IntegrityReport:
    """The integrity check on any readable stream of the stored archive (a local file, an S3 download).

    An encrypted archive is decrypted on the way (every age chunk is authenticated); without a key, only its
    checksum can be proven, and the report says so.
    """
    report = IntegrityReport(file=name)
    counted = _CountingReader(handle)
    if encrypted and decrypt is None:
        return _checksum_only(counted, name, record, report)
    try:
        decryptor = decrypt() if decrypt is not None else None
        recorded_raw = record.raw_size_bytes if record is not None else None
        contents = read_archive(
            counted,  # type: ignore[arg-type]
            compression,
            count_rows=count_rows,
            decryptor=decryptor,
            profile=profile,
            # A decompression bomb stops where its record says the SQL ends.
            max_raw=recorded_raw,
        )
    except AgeKeyError:
        raise  # a wrong or missing key is not damage: stop and say which key
    except (VerificationFailed, AgeError) as exc:
        if record is not None:
            with contextlib.suppress(OSError):
                while counted.read(1 << 20):
                    pass
        report.checks += damaged_checks(exc, counted.count, record.size_bytes if record else None)
        return report
    report.contents = contents
    recorded = record if record is not None and record.raw_size_bytes is not None else None
    report.checks += contents_checks(
        contents,
        compression,
        sha256=record.sha256 if record is not None else None,
        raw_size=recorded.raw_size_bytes if recorded is not None else None,
        tables=recorded.tables if recorded is not None and count_rows else None,
        judged=count_rows,
    )
    return report


def contents_checks(
    contents: ArchiveContents,
    compression: Compression,
    *,
    sha256: str | None,
    raw_size: int | None,
    tables: Mapping[str, int] | None,
    judged: bool = True,
) -> list[Check]:
    """The named checks of an archive read to its end, against what it must hold: the same list whether a full
    read before anything (check_stream) or the restore's own stream (chrono_ci.restore.replay) found it."""
    checks = [
        Check("decompression", True, f"{compression}: {contents.raw_bytes} bytes of SQL"),
        _checksum_check(contents.stored_sha256, sha256),
        _trailer_check(contents.trailer_seen),
    ]
    if judged:
        checks.append(
            Check("contents", True, "only SQL that pg_dump writes (no psql command, no transaction control)")
            if contents.refusal is None
            else Check("contents", False, f"refused: {contents.refusal.message()}")
        )
    if raw_size is not None:
        checks.append(_raw_size_check(contents.raw_bytes, raw_size))
    if tables is not None:
        differ = sorted(
            name for name in set(tables) | set(contents.tables) if tables.get(name) != contents.tables.get(name)
        )
        checks.append(
            Check("row counts", True, f"{len(tables)} tables, {sum(tables.values())} rows, as recorded")
            if not differ
            else Check("row counts", False, "row counts differ from the metadata for " + ", ".join(differ[:10]))
        )
    return checks


def check_written(
    name: str,
    record: ArchiveRecord,
    proof: RoundTripResult,
    stored: Check,
    *,
    trailer_seen: bool,
    decryption_unchecked: bool = False,
) -> IntegrityReport:
    """The check of a new archive: its decompression proven as it was written (`proof`), its stored bytes proven by
    `stored` (a re-read against the stream's sha256, or the store's own checksum), and the trailer and raw size
    from the stream. With `decryption_unchecked`, the age layer on top could not be opened here (no identity)."""
    report = IntegrityReport(file=name)
    report.checks.append(Check("decompression", proof.ok, proof.detail))
    report.checks.append(stored)
    report.checks.append(_trailer_check(trailer_seen))
    if record.raw_size_bytes is not None:
        report.checks.append(_raw_size_check(proof.raw_bytes, record.raw_size_bytes))
    if decryption_unchecked:
        report.checks.append(_DECRYPTION_UNCHECKED)
    return report


def _trailer_check(seen: bool) -> Check:
    if seen:
        return Check("trailer", True, "the dump ends with '-- PostgreSQL database dump complete'")
    return Check("trailer", False, "the dump's closing line is missing: it was cut off")


def _raw_size_check(actual: int, recorded: int) -> Check:
    if actual == recorded:
        return Check("raw size", True, f"{actual} bytes, as recorded")
    return Check("raw size", False, f"{actual} bytes of SQL, {recorded} recorded")


def reread_checksum(path: Path, record: ArchiveRecord) -> Check:
    """The file as the filesystem returns it now, against the size and sha256 computed while it was written."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb", buffering=0) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        return Check("checksum", False, f"cannot read {path} back: {exc.strerror}")
    if record.size_bytes is not None and size != record.size_bytes:
        return Check("checksum", False, f"{size} bytes read back from disk, {record.size_bytes} written")
    actual = digest.hexdigest()
    if actual != record.sha256:
        return Check("checksum", False, f"sha256 {actual} read back from disk, {record.sha256} written")
    return Check("checksum", True, f"sha256 {actual[:16]}... read back from disk, as written")


def damaged_checks(failure: VerificationFailed | AgeError, stored_size: int, recorded_size: int | None) -> list[Check]:
    """The checks of an archive whose decryption or decompression failed part-way: that one, and its size."""
    checks = [Check("decryption" if isinstance(failure, AgeError) else "decompression", False, failure.message)]
    if recorded_size is not None:
        checks.append(_size_check(stored_size, recorded_size))
    return checks


def _checksum_check(actual: str, expected: str | None) -> Check:
    if expected is None:
        return Check("checksum", None, "no metadata entry to compare with")
    if expected == actual:
        return Check("checksum", True, f"sha256 {actual[:16]}... matches the metadata")
    return Check("checksum", False, f"sha256 {actual} differs from the metadata's {expected}")


def _checksum_only(
    counted: _CountingReader, name: str, record: ArchiveRecord | None, report: IntegrityReport
) -> IntegrityReport:
    digest = hashlib.sha256()
    while chunk := counted.read(1 << 20):
        digest.update(chunk)
    report.checks.append(_checksum_check(digest.hexdigest(), record.sha256 if record else None))
    report.checks.append(_DECRYPTION_UNCHECKED)
    return report


class _CountingReader:
    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        return data


def _size_check(size: int, expected: int | None) -> Check:
    if expected == size:
        return Check("size", True, f"{size} bytes, as recorded")
    return Check("size", False, f"{size} bytes on disk, {expected} recorded (truncated or replaced)")


def streams_its_proof(record: ArchiveRecord | None) -> bool:
    """Whether a restore of an archive with this record can leave the full read to the restore's own stream: the
    record holds everything that stream is proven against (sha256, the SQL's size, every table's row count)."""
    return (
        record is not None
        and record.sha256 is not None
        and record.size_bytes is not None
        and record.raw_size_bytes is not None
        and record.tables is not None
    )


def check_before_restore(archive: ArchiveFile, decrypt: DecryptorFactory | None, *, streamed: bool) -> IntegrityReport:
    """The integrity test before a restore or a restore-verification touches anything: with `streamed` (the
    record holds what the restore's own stream is proven against, streams_its_proof), only the cheap checks;
    without, the full read."""
    if streamed and archive.record is not None:
        return cheap_checks(archive.path, archive.record, encrypted=archive.encrypted, decrypt=decrypt)
    return check_archive(
        archive.path,
        archive.compression,
        archive.record,
        encrypted=archive.encrypted,
        decrypt=decrypt,
        profile=archive.kind,
    )


def cheap_checks(
    path: Path, record: ArchiveRecord, *, encrypted: bool = False, decrypt: DecryptorFactory | None = None
) -> IntegrityReport:
    """What a restore checks before the plan when the full proof comes as the archive streams into the
    transaction: the file's size against its record and, encrypted, that the key opens it. Milliseconds, so an
    obviously wrong archive (cut short, replaced, another key) still stops before anything is asked or backed up."""
    report = IntegrityReport(file=path.name)
    try:
        size = path.stat().st_size
    except OSError as exc:
        report.checks.append(Check("readable", False, f"cannot open {path}: {exc.strerror}"))
        return report
    report.checks.append(_size_check(size, record.size_bytes))
    if encrypted and decrypt is not None:
        report.checks.append(_header_check(path, decrypt))
    return report


def _header_check(path: Path, decrypt: DecryptorFactory) -> Check:
    from chrono_ci.pipeline.read import Closable

    try:
        with path.open("rb") as handle:
            plain = decrypt().open(handle)
            try:
                plain.read(1)  # the header and the first authenticated chunk
            finally:
                if isinstance(plain, Closable):
                    plain.close()
    except AgeKeyError:
        raise  # a wrong or missing key is not damage: stop and say which key
    except AgeError as exc:
        return Check("decryption", False, exc.message)
    except OSError as exc:
        return Check("readable", False, f"cannot open {path}: {exc.strerror}")
    return Check("decryption", True, "the key opens it (its header and first chunk)")
