"""Whether the one archive a command was given (`recovery test`, `recovery restore`) is vouched for by a trusted
record (chrono_ci.archive.provenance): a restore needs one, or --allow-unlisted; a test only reports it."""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from chrono_ci.archive.locate import ArchiveFile
from chrono_ci.archive.provenance import Verdict, vet
from chrono_ci.archive.signing import SigningKey
from chrono_ci.errors import Untrusted, VerificationFailed


@dataclass(frozen=True)
class Provenance:
    """Whether a trusted record vouches for the archive a command was given (chrono_ci/archive/vouching.py)."""

    record: str | None  # where the record is; None: no record
    trusted: bool
    signature: str
    problem: str | None
    allowed_unlisted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "trusted": self.trusted,
            "signature": self.signature,
            "problem": self.problem,
            "allowed_unlisted": self.allowed_unlisted,
        }


def judge_archive(archive: ArchiveFile, key: SigningKey | None, now: datetime) -> Verdict:
    """Whether a trusted record vouches for the archive file about to be tested or restored."""
    if archive.claims is None:
        return Verdict(False, "none", f"no record describes it (no entry in backup_metadata.json{_or_s3(archive)})")
    return vet(archive.path.name, archive.claims, _size_of(archive.path), key, now)


def require_provenance(
    archive: ArchiveFile,
    key: SigningKey | None,
    *,
    allow_unlisted: bool,
    warn: Callable[[str], None],
    now: datetime,
) -> Provenance:
    """Before a restore (or a restore-verification): the archive must have a trusted record whose name, size and
    signature match it. Its sha256 is compared by the integrity check that reads it, next or as it streams into
    the restore's transaction (before COMMIT), which refuses a mismatch. Raises Untrusted (exit 10) unless
    `allow_unlisted`, VerificationFailed (exit 7) when the file's size is not the one its record gives. Returns
    what --json reports as `provenance`.
    """
    name = archive.path.name
    recorded = archive.claims.size if archive.claims is not None else None
    size = _size_of(archive.path)
    if isinstance(recorded, int) and not isinstance(recorded, bool) and size is not None and recorded != size:
        raise VerificationFailed(
            f"{name} is {size} bytes, not the {recorded} its record in {archive.where} gives (cut short or "
            "replaced): refusing to restore it. Nothing was touched.",
            hint="Choose another archive from `chrono-ci recovery list`.",
        )
    verdict = judge_archive(archive, key, now)
    document = provenance_document(archive, verdict)
    if verdict.trusted:
        return document
    if allow_unlisted:
        warn(f"{name} is not vouched for by a trusted record ({verdict.problem}); going on because of --allow-unlisted")
        return replace(document, allowed_unlisted=True)
    if archive.claims is None:
        raise Untrusted(
            f"{name} has no record: {verdict.problem}, so nothing shows that chrono-ci made it: refusing to restore "
            "it. Nothing was touched.",
            hint="Anyone who can write the backup folder or the bucket can plant an archive like this one. If you "
            "made it yourself and trust it, run again with --allow-unlisted.",
        )
    raise Untrusted(
        f"The record of {name} in {archive.where} is not trusted ({verdict.problem}): refusing to restore it. "
        "Nothing was touched.",
        hint="Choose an archive whose record is trusted (`chrono-ci recovery list`, column record). If you are "
        "sure this one is yours (made before BACKUP_SIGNING_KEY was set, or with another key), run again with "
        "--allow-unlisted.",
    )


def provenance_document(archive: ArchiveFile, verdict: Verdict) -> Provenance:
    """What --json reports as `provenance`: where the record is, and whether it is believed."""
    where = archive.where if archive.claims is not None else None
    return Provenance(where, verdict.trusted, verdict.signature, verdict.problem)


def _size_of(path: Path) -> int | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _or_s3(archive: ArchiveFile) -> str:
    return ", no chrono-ci metadata on the S3 object" if archive.where.startswith("s3://") else ""
