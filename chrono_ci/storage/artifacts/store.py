"""GitHub Actions workflow artifacts as a storage backend, through the artifact v4 service.

This is the service that `actions/upload-artifact@v4+` talks to: Twirp JSON calls to the results service
(CreateArtifact, FinalizeArtifact, ListArtifacts, GetSignedArtifactURL, DeleteArtifact), authenticated with
the runner's ACTIONS_RUNTIME_TOKEN, and the bytes themselves sent as Azure block-blob blocks to a signed URL.

Key model: an artifact is one archive, uploaded as itself (CreateArtifact version 7 with the archive's media
type, as `@actions/artifact` 6.x does with `skipArchive`), so that what a person downloads is the `.sql.zst` (or
`.age`) file, checked by its digest. The artifact name is the key unless the storage was made with a `name`, in
which case every key maps to that one artifact. An upload holds one block in memory. Artifacts in the zip form
(made by earlier chrono-ci versions, or zipped by the official clients) are still read: the one file inside.

GitHub gives the token and the results URL only to JavaScript and Docker container actions, never to `run:`
steps or composite actions, and GitHub Enterprise Server does not offer the v4 service at all.

ArtifactStorage is the store: its settings, the protocol and the artifacts it finds. The rest of the package:
Twirp calls (.twirp), blobs (.blob), HTTP (.transport), media types, zips read (.legacy_zip), names, runtime.
"""

from __future__ import annotations

import builtins
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

from chrono_ci.errors import ConfigError, ObjectNotFound, StorageError
from chrono_ci.storage.artifacts.blob import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, BlobTransfer, BlockSink
from chrono_ci.storage.artifacts.legacy_zip import open_single_file
from chrono_ci.storage.artifacts.media_types import is_zip, media_type_for
from chrono_ci.storage.artifacts.naming import MAX_NAME_BYTES, validate_artifact_name, validate_name
from chrono_ci.storage.artifacts.runtime import (
    MISSING_ENV_HINT,
    backend_ids_from_token,
    days_setting,
    is_supported_server,
    print_info,
    print_mask,
    print_warning,
)
from chrono_ci.storage.artifacts.transport import NoRedirectForWrites
from chrono_ci.storage.artifacts.twirp import (
    TWIRP_ATTEMPTS,
    TWIRP_BASE_DELAY,
    Artifact,
    NameTaken,
    TwirpClient,
    field_of,
)
from chrono_ci.storage.base import CHUNK_SIZE, ObjectInfo, Seal

__all__ = ["ArtifactStorage"]

# CreateArtifact's version for an artifact that may be a single file uploaded as itself (@actions/artifact 6.x).
RAW_ARTIFACT_VERSION = 7


class ArtifactStorage(TwirpClient, BlobTransfer):
    """The storage protocol on GitHub Actions artifacts (v4 service).

    Keys are artifact names (with a `name`, every key maps to that artifact). An artifact is the archive
    itself, so its size and digest are the archive's: `put` gives sha256, `list` and `stat` the service's own
    facts (size, artifact_sha256, artifact_id, artifact_url), since it keeps no user metadata. For an artifact in
    the zip form, `list` and `stat` describe the zip and `open` reads the file inside.

    Names are unique per workflow run. `put` on a name this job already used replaces that artifact, as the
    other backends overwrite; a name another job of the run used is refused (the service's 409).
    """

    def __init__(
        self,
        *,
        token: str,
        results_url: str,
        name: str | None = None,
        retention_days: int | None = None,
        max_retention_days: int | None = None,
        server_url: str = "https://github.com",
        repository: str = "",
        run_id: str = "",
        block_size: int = DEFAULT_BLOCK_SIZE,
        retry_base_delay: float = TWIRP_BASE_DELAY,
        attempts: int = TWIRP_ATTEMPTS,
        timeout: float = 300.0,
        temp_dir: str | None = None,
        mask: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not token:
            raise ConfigError("ACTIONS_RUNTIME_TOKEN is not set.", hint=MISSING_ENV_HINT)
        if not results_url:
            raise ConfigError("ACTIONS_RESULTS_URL is not set.", hint=MISSING_ENV_HINT)
        parsed = urllib.parse.urlsplit(results_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError("ACTIONS_RESULTS_URL is not an http(s) URL.", hint=MISSING_ENV_HINT)
        if not is_supported_server(server_url):
            host = urllib.parse.urlsplit(server_url).hostname or server_url
            raise ConfigError(
                f"GitHub Enterprise Server ({host}) does not support the artifact v4 service.",
                hint="Artifacts work on github.com and GHE.com only (the official toolkit refuses GHES "
                "too). On GHES, store backups in S3 or a local folder, and upload that folder with "
                "actions/upload-artifact@v3 if you need an artifact.",
            )
        if name is not None:
            validate_artifact_name(name)
        if retention_days is not None and retention_days < 1:
            raise ConfigError(
                f"Artifact retention must be at least 1 day, not {retention_days}.",
                hint="Set ARTIFACT_RETENTION_DAYS to a number of days (1-90 unless your repository allows "
                "more), or leave it unset for the repository default.",
            )
        if not 1 <= block_size <= MAX_BLOCK_SIZE:
            raise ConfigError(
                f"The artifact block size must be between 1 byte and 4000 MiB, not {block_size}.",
                hint="Leave the block size at its default of 8 MiB unless archives exceed 390 GiB.",
            )
        self._run_backend_id, self._job_backend_id = backend_ids_from_token(token)
        self._token = token
        self._origin = f"{parsed.scheme}://{parsed.netloc}"
        self._name = name
        self._retention_days = retention_days
        self._max_retention_days = max_retention_days
        self._retention_warned = False
        self._server_url = server_url.rstrip("/")
        self._repository = repository
        self._run_id = run_id
        self._block_size = block_size
        self._retry_base_delay = retry_base_delay
        self._attempts = max(1, attempts)
        self._timeout = timeout
        self._temp_dir = temp_dir
        self._mask = mask or print_mask
        self._warn = warn or print_warning
        self._log = log or print_info
        # Values that must never appear in a message, even when a server echoes them back.
        self._secrets: set[str] = {token}
        self._direct_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirectForWrites())
        self._opener = urllib.request.build_opener(NoRedirectForWrites())

    @classmethod
    def from_env(
        cls,
        name: str | None,
        environ: Mapping[str, str],
        *,
        mask: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> ArtifactStorage:
        """The storage a Docker container action gets from the runner's environment."""
        return cls(
            token=environ.get("ACTIONS_RUNTIME_TOKEN", ""),
            results_url=environ.get("ACTIONS_RESULTS_URL", ""),
            name=name or None,
            retention_days=days_setting(environ, "ARTIFACT_RETENTION_DAYS"),
            max_retention_days=days_setting(environ, "GITHUB_RETENTION_DAYS"),
            server_url=environ.get("GITHUB_SERVER_URL") or "https://github.com",
            repository=environ.get("GITHUB_REPOSITORY", ""),
            run_id=environ.get("GITHUB_RUN_ID", ""),
            temp_dir=environ.get("RUNNER_TEMP") or None,
            mask=mask,
            warn=warn,
            log=log,
        )

    @property
    def url(self) -> str:
        return f"artifact://{self._name or '*'}"

    # -- the storage protocol --------------------------------------------------------------------------------

    def put(
        self, key: str, source: BinaryIO, metadata: Mapping[str, str] | None = None, seal: Seal | None = None
    ) -> ObjectInfo:
        """An artifact keeps no metadata of ours (chrono-ci neither rotates nor restores from it): `seal` is
        not used."""
        # The key names the artifact by default, and so the file a download gives.
        validate_name(key, "archive name", "Name archives without them.")
        if len(key.encode()) > MAX_NAME_BYTES:
            raise ConfigError(
                f"The archive name {key[:40]!r}... is longer than {MAX_NAME_BYTES} bytes.",
                hint="Use a shorter archive name; file systems refuse longer ones too.",
            )
        name = self._artifact_name(key)
        try:
            upload_url = self._create(name)
        except NameTaken as taken:
            if self._name is not None:
                # Replacing here would let the second database of `backup all` destroy the first one's archive.
                raise StorageError(
                    f"The artifact {name!r} already holds an archive from this workflow run.",
                    hint=f"artifact://{name} holds one archive per run: use artifact:// (one artifact per "
                    "archive) when a job makes several, or give each its own name.",
                ) from None
            existing = next(iter(self._matching(name)), None)
            if existing is None or existing.job_backend_id != self._job_backend_id:
                raise taken from None
            return self._replace(existing, source, metadata)
        return self._upload(name, upload_url, source, metadata)

    def _create(self, name: str) -> str:
        # Version 7 with a media type is an artifact downloaded as itself; version 4 (or a zip type) is a zip.
        request: dict[str, Any] = {
            **self._ids(),
            "name": name,
            "version": RAW_ARTIFACT_VERSION,
            "mime_type": media_type_for(name),
        }
        if (expires_at := self._expires_at()) is not None:
            request["expires_at"] = expires_at
        created = self._twirp("CreateArtifact", request, name=name)
        upload_url = field_of(created, "signed_upload_url")
        if not field_of(created, "ok") or not _is_http_url(upload_url):
            raise StorageError(
                f"GitHub did not accept the artifact {name!r} (CreateArtifact gave no usable upload URL).",
                hint="Run again; if it persists, check https://www.githubstatus.com.",
            )
        return cast(str, upload_url)

    def _replace(self, existing: Artifact, source: BinaryIO, metadata: Mapping[str, str] | None) -> ObjectInfo:
        """Overwrite an artifact this job made: the service can only delete and create again.

        The source is spooled to disk first, so that a source failing half-way leaves the old artifact as it
        was; only an upload failing after the delete leaves neither.
        """
        self._log(
            f"The artifact {existing.name!r} from this job is being replaced; the new archive is spooled to "
            f"{self._temp_dir or tempfile.gettempdir()} first, so that a failed dump cannot destroy the old one."
        )
        with self._temp_file() as spool:
            while chunk := source.read(CHUNK_SIZE):
                self._spool_write(spool, chunk, existing.name)
            spool.seek(0)
            self._delete_artifact(existing)
            return self._upload(existing.name, self._create(existing.name), cast(BinaryIO, spool), metadata)

    def _upload(self, name: str, upload_url: str, source: BinaryIO, metadata: Mapping[str, str] | None) -> ObjectInfo:
        sink = BlockSink(self, upload_url, media_type_for(name))
        try:
            while chunk := source.read(CHUNK_SIZE):
                sink.write(chunk)
            sink.commit()
        except BaseException:
            # Nothing is committed: FinalizeArtifact is never called, so no artifact exists (GitHub lists only
            # finalized ones) and the blob service discards the uncommitted blocks. The source's own exception
            # propagates unchanged.
            sink.abort()
            raise

        sha256 = sink.sha256.hexdigest()
        finalized = self._twirp(
            "FinalizeArtifact",
            # An int64 of 0 is a default value, which the toolkit leaves out like the others.
            {**self._ids(), "name": name, "size": str(sink.size) if sink.size else None, "hash": f"sha256:{sha256}"},
            name=name,
        )
        artifact_id = field_of(finalized, "artifact_id")
        if not field_of(finalized, "ok") or artifact_id in (None, ""):
            raise StorageError(
                f"GitHub did not finalize the artifact {name!r}.",
                hint="Run again; if it persists, check https://www.githubstatus.com.",
            )
        return ObjectInfo(
            key=name,
            size=sink.size,
            modified=datetime.now(UTC),
            metadata={
                **(metadata or {}),
                "sha256": sha256,
                "artifact_sha256": sha256,
                "artifact_id": str(artifact_id),
                "artifact_url": self._artifact_url(str(artifact_id)),
            },
        )

    def open(self, key: str) -> BinaryIO:
        artifact = self._find(self._artifact_name(key))
        response = self._twirp(
            "GetSignedArtifactURL",
            {
                "workflow_run_backend_id": artifact.run_backend_id,
                "workflow_job_run_backend_id": artifact.job_backend_id,
                "name": artifact.name,
            },
            name=artifact.name,
            missing_raises=True,
        )
        signed_url = field_of(response, "signed_url")
        if not _is_http_url(signed_url):
            raise StorageError(
                f"GitHub gave no usable download URL for the artifact {artifact.name!r}.",
                hint="Run again; if it persists, check https://www.githubstatus.com.",
            )
        spool, content_type = self._download(artifact, cast(str, signed_url))
        if not is_zip(content_type, urllib.parse.urlsplit(cast(str, signed_url)).path):
            return cast(BinaryIO, spool)
        try:
            return cast(BinaryIO, open_single_file(spool, artifact.name, key))
        except BaseException:
            spool.close()
            raise

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        newest: dict[str, Artifact] = {}
        for artifact in self._list_artifacts(None):
            if artifact.name.startswith(prefix):
                seen = newest.get(artifact.name)
                if seen is None or artifact.database_id > seen.database_id:
                    newest[artifact.name] = artifact
        return [self._info(artifact) for artifact in newest.values()]

    def stat(self, key: str) -> ObjectInfo:
        return self._info(self._find(self._artifact_name(key)))

    def delete(self, key: str) -> None:
        self._delete_artifact(self._find(self._artifact_name(key)))

    def _delete_artifact(self, artifact: Artifact) -> None:
        # As the toolkit does: the artifact's own backend ids, since another job of the run may have made it.
        response = self._twirp(
            "DeleteArtifact",
            {
                "workflow_run_backend_id": artifact.run_backend_id,
                "workflow_job_run_backend_id": artifact.job_backend_id,
                "name": artifact.name,
            },
            name=artifact.name,
            missing_raises=True,
        )
        if not field_of(response, "ok"):
            raise StorageError(
                f"GitHub did not delete the artifact {artifact.name!r}.",
                hint="Run again, or delete it in the run's summary page.",
            )

    # -- artifacts -------------------------------------------------------------------------------------------

    def _artifact_name(self, key: str) -> str:
        return self._name or key

    def _expires_at(self) -> str | None:
        days = self._retention_days
        if days is None:
            return None
        if self._max_retention_days is not None and days > self._max_retention_days:
            if not self._retention_warned:
                self._retention_warned = True
                self._warn(
                    "Retention days cannot be greater than the maximum allowed retention set within the "
                    f"repository. Using {self._max_retention_days} instead of {days}."
                )
            days = self._max_retention_days
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
        return expires.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _artifact_url(self, artifact_id: str) -> str:
        if not (self._repository and self._run_id):
            return ""
        return f"{self._server_url}/{self._repository}/actions/runs/{self._run_id}/artifacts/{artifact_id}"

    def _find(self, key: str) -> Artifact:
        found = self._matching(key)
        if not found:
            raise ObjectNotFound(f"No artifact named {key!r} in this workflow run.")
        return found[0]

    def _matching(self, name: str) -> builtins.list[Artifact]:
        """The artifacts named `name`, newest first (the toolkit, too, takes the newest)."""
        if not name:
            return []
        matches = [artifact for artifact in self._list_artifacts(name) if artifact.name == name]
        return sorted(matches, key=lambda artifact: artifact.database_id, reverse=True)

    def _info(self, artifact: Artifact) -> ObjectInfo:
        metadata = {
            "artifact_id": str(artifact.database_id),
            "artifact_url": self._artifact_url(str(artifact.database_id)),
        }
        if artifact.digest.startswith("sha256:"):
            metadata["artifact_sha256"] = artifact.digest.removeprefix("sha256:")
        return ObjectInfo(
            key=artifact.name,
            size=artifact.size,
            modified=artifact.created_at,
            metadata=metadata,
        )


def _is_http_url(value: Any) -> bool:
    # Checked before use, because urllib's complaint about a bad URL quotes all of it, signature included.
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
