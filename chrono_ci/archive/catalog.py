"""The archives in a backup folder: what the manifest says, what is on disk, and how a FILE argument is found.

A FILE given as a bare name must stay inside BACKUP_DIR: `..` and symlinks that lead out are refused, so a
name can never make chrono-ci read (or, for a restore, trust) a file elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from chrono_ci.archive.manifest import MANIFEST_NAME, Manifest
from chrono_ci.archive.names import ArchiveName
from chrono_ci.archive.provenance import metadata_fields
from chrono_ci.archive.safefile import open_archive
from chrono_ci.config.settings import Compression
from chrono_ci.errors import ConfigError, ObjectNotFound, VerificationFailed
from chrono_ci.extras import require
from chrono_ci.storage.base import CHUNK_SIZE


@dataclass(frozen=True)
class ArchiveFile:
    path: Path
    name: ArchiveName
    entry: dict[str, Any] | None  # None: on disk but not in backup_metadata.json
    # Where `entry` comes from, for messages: a backup_metadata.json path, or the s3:// URI of the object whose
    # metadata it is.
    record: str = MANIFEST_NAME

    @property
    def compression(self) -> Compression:
        value = str((self.entry or {}).get("compression") or self.name.compression)
        return "zstd" if value == "zstd" else "gzip" if value == "gzip" else "none"

    @property
    def encrypted(self) -> bool:
        return self.name.encrypted

    @property
    def kind(self) -> str:
        return str((self.entry or {}).get("kind") or self.name.kind)

    @property
    def created_at(self) -> str:
        if self.entry and self.entry.get("created_at"):
            return str(self.entry["created_at"])
        return self.name.stamp.isoformat().replace("+00:00", "Z")


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
    entries = _manifest_entries(path.parent)
    entry = next((e for e in reversed(entries) if e.get("file") == path.name), None)
    return ArchiveFile(path, parsed, entry, str(path.parent / MANIFEST_NAME))


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
        if not s3_url:
            raise ConfigError("--from s3 needs S3_URL.", hint="Set S3_URL=s3://bucket/prefix.")
        if "/" in file:
            raise ConfigError(f"{file!r} is not an archive name.", hint="Give a name from `recovery list --from s3`.")
        storage, key = S3Storage.from_env(s3_url, environ), file
    parsed = ArchiveName.parse(key)
    if parsed is None:
        raise _not_ours(key)
    info = storage.stat(key)
    metadata = {name.lower(): value for name, value in info.metadata.items()}
    expected = metadata.get("sha256")
    local = next((e for e in reversed(_manifest_entries(backup_dir)) if e.get("file") == key), None)
    entry: dict[str, Any] | None
    if local is not None and local.get("sha256") == expected:
        entry, record = dict(local), str(backup_dir / MANIFEST_NAME)
    elif "chrono-kind" in metadata:
        entry, record = _remote_entry(key, metadata, info.size), f"{storage.url.rstrip('/')}/{key}"
    else:
        entry, record = None, f"{storage.url.rstrip('/')}/{key}"
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
        yield ArchiveFile(path, parsed, entry, record)


def _not_ours(name: str) -> ConfigError:
    return ConfigError(
        f"{name} is not a chrono-ci archive: its name does not look like postgres_backup_YYYY-MM-DD_HH-MM-SS.sql.zst.",
        hint="chrono-ci tests and restores only archives it made (names from `chrono-ci recovery list`).",
    )


def _remote_entry(key: str, metadata: Mapping[str, str], size: int) -> dict[str, Any]:
    recorded = metadata_fields(metadata).size
    return {
        "file": key,
        "kind": metadata.get("chrono-kind"),
        "series": metadata.get("chrono-series", "backup"),
        "source": unquote(metadata.get("chrono-source", "")),
        "created_at": metadata.get("chrono-created-at"),
        "compression": metadata.get("chrono-compression"),
        "sha256": metadata.get("sha256"),
        # Objects written before chrono-size existed record no size: theirs is the object's own.
        "size_bytes": size if recorded is None else recorded,
        "signature": metadata.get("chrono-signature"),
    }


def _manifest_entries(folder: Path) -> list[dict[str, Any]]:
    return Manifest(folder).read()


def list_archives(backup_dir: Path) -> list[ArchiveFile]:
    """Every archive of ours in the folder, listed or not, oldest first."""
    entries = {str(e["file"]): e for e in Manifest(backup_dir).read()}
    found: list[ArchiveFile] = []
    if backup_dir.is_dir():
        for path in backup_dir.iterdir():
            parsed = ArchiveName.parse(path.name)
            if parsed is not None and path.is_file() and not path.is_symlink():
                found.append(ArchiveFile(path, parsed, entries.get(path.name)))
    return sorted(found, key=lambda a: (a.created_at, a.path.name))


def file_sha256(folder: Path, name: str) -> str:
    digest = hashlib.sha256()
    with open_archive(folder, name) as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
