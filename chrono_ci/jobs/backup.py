"""One backup, end to end: probe the server, choose pg_dump, stream the dump into the folder, prove the archive,
record it in the manifest, and only then rotate.

Nothing is committed unless every step before it succeeded: a failed run leaves no archive that looks valid,
leaves the manifest unchanged and deletes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chrono_ci import __version__
from chrono_ci.archive.catalog import Vetted
from chrono_ci.archive.manifest import Manifest
from chrono_ci.archive.names import reserve_archive_name
from chrono_ci.archive.record import ArchiveRecord
from chrono_ci.config.settings import Settings
from chrono_ci.errors import ChronoError, StorageError, VerificationFailed
from chrono_ci.extras import require
from chrono_ci.jobs.dump_start import start_dump
from chrono_ci.pipeline.fanout import Destination, put_everywhere
from chrono_ci.pipeline.roundtrip import RoundTrip
from chrono_ci.pipeline.stream import ENCRYPTED_SUFFIX, EXTENSIONS, ArchiveStream, make_compressor
from chrono_ci.profiles import profile_for
from chrono_ci.report.console import Reporter, human_size
from chrono_ci.retention.apply import abort_abandoned_uploads, rotate, rotate_remote
from chrono_ci.retention.policy import Decision
from chrono_ci.secrets import add_mask
from chrono_ci.source.target import DatabaseTarget
from chrono_ci.storage import open_storage
from chrono_ci.storage.artifacts.naming import artifact_name_for
from chrono_ci.storage.base import CHUNK_SIZE
from chrono_ci.storage.local import LocalStorage, check_writable_dir, remove_leftovers
from chrono_ci.storage.unfinished import abort_recorded_uploads, remember_unfinished
from chrono_ci.timestamps import iso_z
from chrono_ci.verify.integrity import IntegrityReport, check_archive, check_stream, check_written, reread_checksum
from chrono_ci.verify.stored import stored_checksum


@dataclass
class BackupResult:
    kind: str
    record: ArchiveRecord
    path: Path
    check: IntegrityReport
    removed: list[Decision] = field(default_factory=list)
    # Records retention did not believe, so neither counted nor deleted (see chrono_ci/archive/provenance.py).
    rejected: list[Vetted] = field(default_factory=list)


def source_id(target: DatabaseTarget) -> str:
    """Which database an archive belongs to, for rotation: host, port and name (never the user or password)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}/{target.dbname}"


def run_backup(
    settings: Settings,
    kind: str,
    reporter: Reporter,
    *,
    series: str = "backup",
    target: DatabaseTarget | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    environ: Mapping[str, str] | None = None,
    artifact_name: str | None = None,
    artifact_kind: str | None = None,
) -> BackupResult:
    """`artifact_name` is ARTIFACT_NAME (without it, the artifact is named after the archive), `artifact_kind`
    the kind appended to it when a run backs up several databases."""
    env = os.environ if environ is None else environ
    profile = profile_for(kind)
    target = target or profile.target(settings)
    folder = settings.backup_dir
    manifest = Manifest(folder)
    # A folder we cannot write, a damaged manifest or an unusable upload target stops us before the dump is read.
    check_writable_dir(folder)
    manifest.read()
    leftovers = remove_leftovers(folder)
    if leftovers:
        reporter.info(f"removed {len(leftovers)} file(s) an interrupted run left in {folder}: {', '.join(leftovers)}")
    encryption = settings.encryption
    extension = EXTENSIONS[settings.compression] + (ENCRYPTED_SUFFIX if encryption.enabled else "")
    artifact = artifact_name_for(artifact_name, extension, artifact_kind) if artifact_name else None
    if "s3" in settings.uploads:
        require("s3")  # a missing extra is a setting to fix: said before connecting, as every other one

    compressor = make_compressor(settings.compression, settings.compression_level)
    created = clock()
    reservation = reserve_archive_name(folder, kind, series, created, extension)
    name = reservation.name
    try:
        reporter.info(f"connecting to {target.display()}")
        started = time.monotonic()
        begun = start_dump(profile, target, settings.pg_bin_dir)
        server, tools = begun.server, begun.tools
        try:
            # The stores are opened (S3: boto3, its client, a preflight listing) while pg_dump starts: one that
            # cannot be used still stops the run before a byte of the dump is read.
            destinations = open_destinations(settings, env, reporter, artifact)
            encryptor = encryption.encryptor() if encryption.enabled else None
        except BaseException:
            begun.dump.kill()
            raise
        stream = ArchiveStream(
            begun.dump,
            compressor,
            progress=lambda done: reporter.progress(done, f"dumping {target.dbname}"),
            profile=kind,
            encryptor=encryptor,
            roundtrip=RoundTrip(settings.compression),
        )
        reporter.ok(
            f"PostgreSQL {server.version} ({server.database} as {server.user}); "
            f"pg_dump {tools.version} from {tools.origin} ({tools.bin_dir})"
        )
        record = ArchiveRecord(
            file=name,
            kind=kind,
            series=series,
            database=target.dbname,
            host=target.host,
            port=target.port,
            source=source_id(target),
            created_at=iso_z(created),
            compression=settings.compression,
            compression_level=settings.compression_level if settings.compression != "none" else None,
            profile=profile.kind,
            encryption=encryption.method,
            tool_version=__version__,
            local=settings.keep_local,
        )
        try:
            put_everywhere(destinations, name, stream, record.metadata(), record.seal(settings.signing_key))  # type: ignore[arg-type]
        finally:
            stream.close()
            for destination in destinations:
                remember_unfinished(folder, destination.storage)
    finally:
        reservation.release()
    duration = time.monotonic() - started
    stats = stream.stats
    primary = destinations[0]
    assert primary.info is not None
    stored = primary.info
    path = folder / name
    ratio = stats.raw_bytes / stored.size if stored.size else 1.0
    reporter.ok(
        f"archive written to {primary.target}: {name} ({human_size(stored.size)} from {human_size(stats.raw_bytes)} "
        f"of SQL, ratio {ratio:.1f}x, {duration:.1f} s, {len(stats.tables)} tables, {sum(stats.tables.values())} rows)"
    )

    record = replace(
        record,
        size_bytes=stored.size,
        sha256=stored.metadata["sha256"],
        raw_size_bytes=stats.raw_bytes,
        parts=profile.parts(begun.dump),
        server_version=server.version,
        pg_dump_version=tools.version,
        duration_seconds=round(duration, 3),
        tables=dict(stats.tables),
    )
    if settings.signing_key is not None:
        record = replace(record, signature=settings.signing_key.sign(record.signed()))

    check = _check_primary(primary, name, settings, record, stream)
    if not check.ok:
        # An archive that fails its own check must not linger looking like a backup.
        _discard_everywhere(destinations, name)
        failed = "; ".join(f"{c.name}: {c.detail}" for c in check.failed())
        raise VerificationFailed(
            f"The new archive {name} failed its integrity check and was removed: {failed}",
            hint="The disk or filesystem may be faulty; older backups were not touched. Run again.",
        )
    verified: dict[str, Any] = {"level": "check", "ok": True, "at": iso_z(clock())}
    reporter.ok(f"integrity check passed: {', '.join(c.name for c in check.checks if c.ok)}")
    unchecked = [c for c in check.checks if c.ok is None]
    for item in unchecked:
        reporter.info(f"{item.name}: {item.detail}")
    if unchecked:
        verified["not_checked"] = [c.name for c in unchecked]

    uploads = [_upload_record(d, name, stored.metadata["sha256"]) for d in destinations if d.target != "local"]
    for upload in uploads:
        where = upload.get("uri") or upload.get("artifact_url") or upload.get("name")
        if upload["ok"]:
            reporter.ok(f"uploaded to {upload['target']}: {where} (sha256 checked)")
        else:
            reporter.fail(f"upload to {upload['target']} failed: {upload['error']}")

    proof = None
    if settings.verify == "restore" and all(u["ok"] for u in uploads):
        reporter.info("restore-verification: restoring into a scratch database")
        # Only this setting needs the restore machinery: a backup does not import it before pg_dump starts.
        from chrono_ci.restore.replay import Expected
        from chrono_ci.verify.scratch import restore_verify

        with _local_archive(primary, name, path) as local_path:
            proof = restore_verify(
                local_path,
                settings.compression,
                Expected(sha256=record.sha256, raw_size=stats.raw_bytes, tables=stats.tables),
                settings.scratch,
                profile=kind,
                decrypt=_decrypt_for_check(settings),
            )
        verified = {**proof.as_dict(), "at": iso_z(clock())}
        (reporter.ok if proof.ok else reporter.fail)(f"restore-verification: {proof.summary()}")
    record = replace(record, verified=verified, uploads=tuple(uploads))

    try:
        manifest.add(record)
    except ChronoError as error:
        # An archive the metadata does not list is never trusted, rotated or restored: keeping it would only
        # leave a backup that looks made and is not.
        _discard_everywhere(destinations, name)
        raise StorageError(
            f"{error.message} The new archive {name} was removed, since backup_metadata.json could not list it.",
            hint=error.hint or "Fix the backup folder and run again; older backups were not touched.",
        ) from error

    failed_uploads = [u for u in uploads if not u["ok"]]
    if failed_uploads:
        kept = "The archive stays in BACKUP_DIR. " if settings.keep_local else ""
        # What the store itself advises (a setting to check or raise) says more than "fix the cause".
        advice = " ".join(dict.fromkeys(d.error.hint for d in destinations if d.error is not None and d.error.hint))
        raise StorageError(
            "The backup was made but could not be stored everywhere: "
            + "; ".join(f"{u['target']}: {u['error']}" for u in failed_uploads),
            hint=f"{kept}The metadata records the failed upload; nothing was rotated away. "
            + (advice or "Fix the cause (see the message) and run again."),
        )
    if proof is not None and not proof.ok:
        # The archive stays (nothing is ever lost) and says it is unproven; a backup that is not proven is a
        # failed run, so nothing is rotated away.
        raise VerificationFailed(
            f"{name} was written but did not pass restore-verification: {proof.summary()}.",
            hint="Its metadata entry records verified.ok = false. Older backups were not rotated away. "
            + ("Give --scratch-url a server with the missing extensions." if proof.missing_extensions else ""),
        )

    removed: list[Decision] = []
    rejected: list[Vetted] = []
    key = settings.signing_key
    group = (kind, record.source)
    if settings.keep_local:
        rotation = rotate(folder, manifest, group, [name], settings.retention, clock(), reporter, key=key)
        removed, rejected = rotation.removed, rotation.rejected
    for destination in destinations:
        if destination.target == "s3":
            remote = rotate_remote(destination.storage, group, name, settings.retention, clock(), reporter, key=key)
            removed += remote.removed
            rejected += remote.rejected
    profile.after_backup(reporter)
    return BackupResult(kind=kind, record=record, path=path, check=check, removed=removed, rejected=rejected)


def open_destinations(
    settings: Settings, environ: Mapping[str, str], reporter: Reporter, artifact_name: str | None
) -> list[Destination]:
    """The stores this backup goes to, the first one primary; each is checked (an artifact name too) before the
    dump starts. Without `artifact_name`, the artifact is named after the archive."""
    destinations: list[Destination] = []
    if settings.keep_local:
        destinations.append(Destination("local", LocalStorage(settings.backup_dir)))
    for upload in settings.uploads:
        if upload == "s3":
            assert settings.s3_url is not None
            storage = open_storage(settings.s3_url, environ, warn=reporter.warn)
            # Wrong credentials or a missing bucket fail here, before minutes of dumping.
            storage.list("chrono-ci-preflight/")
            abort_recorded_uploads(settings.backup_dir, storage, reporter.warn)
            abort_abandoned_uploads(storage, reporter)
            destinations.append(Destination("s3", storage))
        elif upload == "artifact":
            from chrono_ci.storage.artifacts.store import ArtifactStorage

            storage = ArtifactStorage.from_env(
                artifact_name, environ, warn=reporter.warn, mask=_mask_for(environ, reporter)
            )
            destinations.append(Destination("artifact", storage))
    return destinations


def _mask_for(environ: Mapping[str, str], reporter: Reporter) -> Callable[[str], None]:
    """Masks go to stderr (the runner reads workflow commands on both streams; stdout may be --json)."""

    def mask(value: str) -> None:
        reporter.add_secrets([value])
        if environ.get("GITHUB_ACTIONS") == "true":
            add_mask(value, sys.stderr)

    return mask


def _discard_everywhere(destinations: list[Destination], name: str) -> None:
    for destination in destinations:
        if destination.info is not None:
            with contextlib.suppress(ChronoError):
                destination.storage.delete(name)


def _check_primary(
    primary: Destination, name: str, settings: Settings, record: ArchiveRecord, stream: ArchiveStream
) -> IntegrityReport:
    """The guide's integrity check after every backup, without paying for a second decompression: the stream
    was decompressed again as it was written (`stream.proof`), so what remains is the stored bytes against the
    sha256 computed in the stream: read back from the local file, or, in a store that checked every byte it
    took against what we sent (S3's Content-MD5), its record read back instead of a download. An archive we can
    decrypt is read back in full: the age layer is proven only by decrypting it."""
    encrypted = settings.encryption.enabled
    decrypt = _decrypt_for_check(settings)
    stored = None
    if not (encrypted and decrypt is not None):
        if primary.target == "local":
            stored = reread_checksum(settings.backup_dir / name, record)
        elif primary.info is not None and primary.info.proof:
            stored = stored_checksum(primary.info, record)
    if stored is not None:
        assert stream.proof is not None, "the stream ended, so the round trip gave its verdict"
        return check_written(
            name,
            record,
            stream.proof,
            stored,
            trailer_seen=stream.stats.trailer_seen,
            decryption_unchecked=encrypted,
        )
    # The row counts were taken from these very bytes a moment ago: the full check proves the stored archive
    # (checksum, decryption, full decompression, trailer, size) without paying for the count twice.
    if primary.target == "local":
        return check_archive(
            settings.backup_dir / name,
            settings.compression,
            record,
            count_rows=False,
            encrypted=encrypted,
            decrypt=decrypt,
        )
    # Kept nowhere locally, in a store that proved nothing as it took it: read it back, in full.
    with primary.storage.open(name) as handle:
        return check_stream(
            handle, name, settings.compression, record, count_rows=False, encrypted=encrypted, decrypt=decrypt
        )


def _decrypt_for_check(settings: Settings) -> Callable[[], Any] | None:
    """With only public keys (recipients), the new archive cannot be decrypted here: the check proves its
    checksum and says the rest was not checked."""
    encryption = settings.encryption
    return encryption.decryptor if encryption.enabled and encryption.can_decrypt else None


@contextlib.contextmanager
def _local_archive(primary: Destination, name: str, path: Path) -> Iterator[Path]:
    if primary.target == "local":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="chrono-ci-verify-") as folder:
        copy = Path(folder) / name
        with primary.storage.open(name) as source, copy.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK_SIZE)
        yield copy


def _upload_record(destination: Destination, name: str, sha256: str) -> dict[str, Any]:
    record: dict[str, Any] = {"target": destination.target, "ok": False, "error": None}
    if destination.target == "s3":
        record["uri"] = f"{destination.storage.url.rstrip('/')}/{name}"
    info = destination.info
    if destination.error is not None or info is None:
        error = destination.error
        record["error"] = error.message if error is not None else "the upload did not finish"
        return record
    if info.metadata.get("sha256") != sha256:
        record["error"] = f"the stored copy's sha256 {info.metadata.get('sha256')} differs from the archive's {sha256}"
        return record
    record["ok"] = True
    if destination.target == "artifact":
        record["name"] = info.key
        record["artifact_id"] = info.metadata.get("artifact_id")
        record["artifact_url"] = info.metadata.get("artifact_url")
    return record
