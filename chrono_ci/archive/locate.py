"""Which archive a FILE argument means: a name in the backup folder, a path, or an object in S3 (downloaded), with
the record that describes it.

A FILE given as a bare name must stay inside BACKUP_DIR: `..` and symlinks that lead out are refused, so a
name can never make chrono-ci read (or, for a restore, trust) a file elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chrono_ci.archive.manifest import MANIFEST_NAME, Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.record import META_SHA256, ArchiveRecord, Fields, has_our_metadata, lowered
from chrono_ci.config.options import Compression, s3_url_for_reading
from chrono_ci.errors import ConfigError, ObjectNotFound, VerificationFailed
from chrono_ci.extras import require
from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.timestamps import iso_z


@dataclass(frozen=True)
class ArchiveFile:
    path: Path
    name: ArchiveName
    record: ArchiveRecord | None  # None: no record describes it (not in backup_metadata.json, no object metadata)
    # Where the record comes from, for messages: a backup_metadata.json path, or the s3:// URI of the object whose
    # metadata it is.
    where: str = MANIFEST_NAME
    # The record's claims as written, for provenance to judge (a typed record has already made sense of them).
    claims: Fields | None = None

    @property
    def compression(self) -> Compression:
        if self.record is not None:
            return self.record.stored_compression
        value = self.name.compression
        return "zstd" if value == "zstd" else "gzip" if value == "gzip" else "none"

    @property
    def encrypted(self) -> bool:
        return self.name.encrypted

    @property
    def kind(self) -> str:
        return (self.record.kind if self.record is not None else "") or self.name.kind

    @property
    def created_at(self) -> str:
        if self.record is not None and self.record.created_at:
            return self.record.created_at
        return iso_z(self.name.stamp)


def resolve_archive(file: str, backup_dir: Path) -> ArchiveFile:
    """FILE is a name in BACKUP_DIR, or a path (anything with a '/')."""
    if "/" in file:
        path = Path(file).expanduser()
    else:
        if file in ("", ".", ".."):
            raise ConfigError(
                f"{file!r} is not an archive name.", hint="Give a file name from `chrono-ci recovery list`."
            )
        path = backup_dir / file
        if path.is_symlink():
            real = path.resolve()
            if backup_dir.resolve() not in real.parents:
                raise ConfigError(
                    f"{file} in {backup_dir} is a symbolic link that leads outside the backup folder (to {real}).",
                    hint="Give the real path of the archive explicitly if you trust it.",
                )
    if not path.exists():
        raise ObjectNotFound(
            f"No archive {file!r}" + ("" if "/" in file else f" in {backup_dir}") + ".",
            hint="List the archives with `chrono-ci recovery list` (and check BACKUP_DIR).",
        )
    if not path.is_file():
        raise ConfigError(f"{path} is not a file.", hint="Give an archive file from `chrono-ci recovery list`.")
    parsed = ArchiveName.parse(path.name)
    if parsed is None:
        raise _not_ours(path.name)
    entry = _manifest_entry(path.parent, path.name)
    record = ArchiveRecord.from_entry(entry) if entry is not None else None
    claims = Fields.of_entry(entry) if entry is not None else None
    return ArchiveFile(path, parsed, record, str(path.parent / MANIFEST_NAME), claims)


@contextlib.contextmanager
def located_archive(
    file: str, backup_dir: Path, origin: str, s3_url: str | None, environ: Mapping[str, str]
) -> Iterator[ArchiveFile]:
    """The archive FILE names, local or in S3 (`--from s3`, or FILE = s3://bucket/prefix/name).

    A remote archive is downloaded into a private temporary folder with its sha256 checked on the way down, and
    removed afterwards: everything after that (tests, restore) reads a local file.
    """
    if not file.startswith("s3://") and origin != "s3":
        yield resolve_archive(file, backup_dir)
        return
    require("s3")
    from chrono_ci.storage.s3.store import S3Storage

    if file.startswith("s3://"):
        base, _, key = file.rpartition("/")
        if base == "s3:/" or not key:
            raise ConfigError(f"{file} does not name an object.", hint="Use s3://bucket/prefix/ARCHIVE_NAME.")
        storage = S3Storage.from_env(base, environ)
    else:
        s3_url = s3_url_for_reading(s3_url)
        if "/" in file:
            raise ConfigError(f"{file!r} is not an archive name.", hint="Give a name from `recovery list --from s3`.")
        storage, key = S3Storage.from_env(s3_url, environ), file
    parsed = ArchiveName.parse(key)
    if parsed is None:
        raise _not_ours(key)
    info = storage.stat(key)
    expected = lowered(info.metadata).get(META_SHA256)
    local = _manifest_entry(backup_dir, key)
    uri = f"{storage.url.rstrip('/')}/{key}"
    if local is not None and local.get("sha256") == expected:
        record, where, claims = ArchiveRecord.from_entry(local), str(backup_dir / MANIFEST_NAME), Fields.of_entry(local)
    elif has_our_metadata(info.metadata):
        record, where = ArchiveRecord.from_metadata(key, info.metadata, info.size), uri
        claims = Fields.of_metadata(info.metadata)
        if claims.size is None:  # written before chrono-size existed: the object's own size is its record's
            claims = replace(claims, size=info.size)
    else:
        record, where, claims = None, uri, None
    with tempfile.TemporaryDirectory(prefix="chrono-ci-download-") as folder:
        path = Path(folder) / key
        digest = hashlib.sha256()
        with storage.open(key) as source, path.open("wb") as out:
            while chunk := source.read(CHUNK_SIZE):
                digest.update(chunk)
                out.write(chunk)
        if expected and digest.hexdigest() != expected:
            raise VerificationFailed(
                f"{key} in {storage.url} does not match its recorded sha256 ({digest.hexdigest()} read, "
                f"{expected} recorded): it was damaged or replaced.",
                hint="Do not restore it; choose another archive from `chrono-ci recovery list --from s3`.",
            )
        yield ArchiveFile(path, parsed, record, where, claims)


def _not_ours(name: str) -> ConfigError:
    return ConfigError(
        f"{name} is not a chrono-ci archive: its name does not look like postgres_backup_YYYY-MM-DD_HH-MM-SS.sql.zst.",
        hint="chrono-ci tests and restores only archives it made (names from `chrono-ci recovery list`).",
    )


def _manifest_entry(folder: Path, name: str) -> Mapping[str, Any] | None:
    """The last entry backup_metadata.json in `folder` has for `name`."""
    return next((entry for entry in reversed(Manifest(folder).read()) if entry.get("file") == name), None)
