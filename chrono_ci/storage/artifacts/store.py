"""GitHub Actions workflow artifacts as a storage backend, through the artifact v4 service.

This is the service that `actions/upload-artifact@v4+` talks to: Twirp JSON calls to the results service
(CreateArtifact, FinalizeArtifact, ListArtifacts, GetSignedArtifactURL, DeleteArtifact), authenticated with
the runner's ACTIONS_RUNTIME_TOKEN, and the bytes themselves sent as Azure block-blob blocks to a signed URL.

Key model: an artifact is a zip holding one file. The artifact name is the key unless the storage was made
with a `name`, in which case `put` creates that artifact and the file inside keeps the key. The zip is
STORED (the archive is already compressed) and written on the fly, so an upload holds one block in memory.

GitHub gives the token and the results URL only to JavaScript and Docker container actions, never to `run:`
steps or composite actions, and GitHub Enterprise Server does not offer the v4 service at all.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import errno
import hashlib
import http.client
import io
import ipaddress
import json
import random
import re
import socket
import stat as stat_module
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import IO, Any, BinaryIO, cast
from xml.sax.saxutils import escape as xml_escape

from chrono_ci import __version__
from chrono_ci.errors import ConfigError, ObjectNotFound, StorageError
from chrono_ci.storage.base import CHUNK_SIZE, ObjectInfo, Seal

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "FORBIDDEN_NAME_CHARACTERS",
    "ArtifactStorage",
    "backend_ids_from_token",
    "default_artifact_name",
    "validate_artifact_name",
]

SERVICE = "github.actions.results.api.v1.ArtifactService"

# The upload toolkit's buffer size; also what keeps memory bounded, since one block is held at a time.
DEFAULT_BLOCK_SIZE = 8 << 20
# Azure block-blob limits (service version >= 2019-12-12).
MAX_BLOCK_SIZE = 4000 << 20
MAX_BLOCKS = 50_000
# Sent on every blob call: any version >= 2019-12-12 takes blocks of up to 4000 MiB.
AZURE_API_VERSION = "2023-11-03"

# The toolkit's rules (path-and-artifact-name-validation.ts); the service enforces the same.
FORBIDDEN_PATH_CHARACTERS: Mapping[str, str] = {
    '"': 'double quote (")',
    ":": "colon (:)",
    "<": "less than (<)",
    ">": "greater than (>)",
    "|": "vertical bar (|)",
    "*": "asterisk (*)",
    "?": "question mark (?)",
    "\r": "carriage return (\\r)",
    "\n": "line feed (\\n)",
}
FORBIDDEN_NAME_CHARACTERS: Mapping[str, str] = {
    **FORBIDDEN_PATH_CHARACTERS,
    "\\": "backslash (\\)",
    "/": "forward slash (/)",
}

# The toolkit's Twirp retry policy (artifact-twirp-client.ts).
TWIRP_ATTEMPTS = 5
TWIRP_BASE_DELAY = 3.0
RETRY_MULTIPLIER = 1.5
TWIRP_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# What the Azure SDK's retry policy retries on blob calls.
BLOB_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# The toolkit throws these socket errors at once instead of retrying: waiting does not fix a firewall.
_NETWORK_ERRNOS = {
    errno.ECONNRESET: "ECONNRESET",
    errno.ETIMEDOUT: "ETIMEDOUT",
    errno.ECONNREFUSED: "ECONNREFUSED",
    errno.EHOSTUNREACH: "EHOSTUNREACH",
}

# A dropped connection mid-body surfaces as http.client's own exceptions, not as OSError.
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)

_MISSING_ENV_HINT = (
    "GitHub gives ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL only to JavaScript and Docker container "
    "actions: `run:` steps and composite actions do not get them. Use the Docker action "
    "(`uses: owner/chrono-ci@v1`), or expose them to a `run:` step with crazy-max/ghaction-github-runtime. "
    "Self-hosted runners need runner v2.308.0 or later; with act, pass --artifact-server-path. Outside "
    "GitHub Actions, store backups in a local folder or S3 instead."
)
_NETWORK_HINT = (
    "Make sure the runner can reach all GitHub endpoints: self-hosted runners need outbound HTTPS to the "
    "Actions results and blob storage hosts (listed under domains.actions in https://api.github.com/meta)."
)


def validate_artifact_name(name: str) -> None:
    """Raise ConfigError unless `name` is a name the artifact service accepts."""
    _validate(name, "artifact name", "Set ARTIFACT_NAME to a name without them.")


def _validate(name: str, what: str, fix: str) -> None:
    if not name:
        raise ConfigError(f"The {what} is empty.", hint=f"Artifact names cannot be empty. {fix}")
    found = [label for char, label in FORBIDDEN_NAME_CHARACTERS.items() if char in name]
    if found:
        raise ConfigError(
            f"Invalid {what} {name!r}: it contains {', '.join(found)}.",
            hint=f"Artifact names cannot contain any of: {', '.join(FORBIDDEN_NAME_CHARACTERS.values())}. " + fix,
        )


def default_artifact_name(kind: str, database: str, environ: Mapping[str, str]) -> str:
    """A name unique per workflow run, run attempt, job and database, valid under the service's rules.

    Names are unique per workflow *run*, and matrix legs share GITHUB_JOB, so the job's backend id (from the
    runtime token) tells them apart when it is available.
    """
    parts = ["chrono-ci", kind, database]
    for var in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB"):
        if value := environ.get(var, "").strip():
            parts.append(value)
    token = environ.get("ACTIONS_RUNTIME_TOKEN", "")
    if token:
        with contextlib.suppress(ConfigError):
            _, job_id = backend_ids_from_token(token)
            parts.append(re.sub(r"[^0-9A-Za-z]", "", job_id)[:8])
    return "-".join(cleaned for part in parts if (cleaned := _sanitize(part)))


def _sanitize(text: str) -> str:
    cleaned = "".join("-" if char in FORBIDDEN_NAME_CHARACTERS or char.isspace() else char for char in text)
    return re.sub(r"-{2,}", "-", cleaned).strip("-.")


def backend_ids_from_token(token: str) -> tuple[str, str]:
    """(workflow run backend id, workflow job run backend id) from the token's `scp` claim, as the toolkit
    reads them.

    The payload is read without verifying the signature: the service verifies it, we only need the ids.
    """
    invalid = ConfigError(
        "The runtime token (ACTIONS_RUNTIME_TOKEN) is invalid or has no Actions.Results scope, so the "
        "artifact service cannot be used.",
        hint="Use the token the runner gives the Docker action, unchanged. A token from elsewhere (a copy, a "
        "self-hosted runner older than v2.308.0, act without --artifact-server-path) lacks the "
        "'Actions.Results:<run>:<job>' scope.",
    )
    pieces = token.split(".")
    if len(pieces) != 3:
        raise invalid
    payload = pieces[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        raise invalid from None
    scopes = claims.get("scp") if isinstance(claims, dict) else None
    if not isinstance(scopes, str) or not scopes:
        raise invalid
    for scope in scopes.split(" "):
        scope_parts = scope.split(":")
        if scope_parts[0] != "Actions.Results":
            continue
        if len(scope_parts) != 3 or not scope_parts[1] or not scope_parts[2]:
            raise invalid
        return scope_parts[1], scope_parts[2]
    raise invalid


def _is_supported_server(server_url: str) -> bool:
    # The toolkit treats every host but these as GHES, which has no v4 service; loopback hosts can only be a
    # local test server, which the toolkit allows as *.localhost.
    host = (urllib.parse.urlsplit(server_url).hostname or "").rstrip(".").lower()
    return host == "github.com" or host.endswith(".ghe.com") or _is_loopback(host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def _print_mask(value: str) -> None:
    print(f"::add-mask::{_escape_command(value)}", flush=True)


def _print_warning(message: str) -> None:
    print(f"::warning::{_escape_command(message)}", flush=True)


def _print_info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _escape_command(value: str) -> str:
    # Workflow command data escaping (@actions/core command.ts); the runner unescapes it back.
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


@dataclass(frozen=True)
class _Artifact:
    name: str
    database_id: int
    size: int
    created_at: datetime
    digest: str
    run_backend_id: str
    job_backend_id: str


@dataclass
class _Response:
    status: int
    reason: str
    headers: Message
    body: bytes


class _NoRedirectForWrites(urllib.request.HTTPRedirectHandler):
    # A redirected PUT or POST would be replayed as a GET by urllib; a redirect there is an error, not a hop.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if req.get_method() not in ("GET", "HEAD"):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class ArtifactStorage:
    """The storage protocol on GitHub Actions artifacts (v4 service).

    Keys are artifact names. Sizes are the archive's (the file inside the zip), in `put`, `list` and `stat`
    alike; the zip's own size and sha256 are in the metadata (zip_size, zip_sha256), with artifact_id and
    artifact_url. `put` adds sha256 of the archive; the service keeps no user metadata, so `list` and `stat`
    only return its own facts.

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
            raise ConfigError("ACTIONS_RUNTIME_TOKEN is not set.", hint=_MISSING_ENV_HINT)
        if not results_url:
            raise ConfigError("ACTIONS_RESULTS_URL is not set.", hint=_MISSING_ENV_HINT)
        parsed = urllib.parse.urlsplit(results_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError("ACTIONS_RESULTS_URL is not an http(s) URL.", hint=_MISSING_ENV_HINT)
        if not _is_supported_server(server_url):
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
        self._mask = mask or _print_mask
        self._warn = warn or _print_warning
        self._log = log or _print_info
        # Values that must never appear in a message, even when a server echoes them back.
        self._secrets: set[str] = {token}
        self._direct_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirectForWrites())
        self._opener = urllib.request.build_opener(_NoRedirectForWrites())

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
            retention_days=_days(environ, "ARTIFACT_RETENTION_DAYS"),
            max_retention_days=_days(environ, "GITHUB_RETENTION_DAYS"),
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
        # The key names the artifact (by default) and the file inside, so the stricter name rules apply.
        _validate(key, "archive name", "Name archives without them.")
        if len(key.encode()) > _NAME_ROOM:
            raise ConfigError(
                f"The archive name {key[:40]!r}... is longer than {_NAME_ROOM} bytes.",
                hint="Use a shorter archive name; file systems refuse longer ones too.",
            )
        name = self._name or key
        try:
            upload_url = self._create(name)
        except _NameTaken as taken:
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
            return self._replace(existing, key, source, metadata)
        return self._upload(name, key, upload_url, source, metadata)

    def _create(self, name: str) -> str:
        request: dict[str, Any] = {**self._ids(), "name": name, "version": 4}
        if (expires_at := self._expires_at()) is not None:
            request["expires_at"] = expires_at
        created = self._twirp("CreateArtifact", request, name=name)
        upload_url = _field(created, "signed_upload_url")
        if not _field(created, "ok") or not _is_http_url(upload_url):
            raise StorageError(
                f"GitHub did not accept the artifact {name!r} (CreateArtifact gave no usable upload URL).",
                hint="Run again; if it persists, check https://www.githubstatus.com.",
            )
        return cast(str, upload_url)

    def _replace(
        self, existing: _Artifact, key: str, source: BinaryIO, metadata: Mapping[str, str] | None
    ) -> ObjectInfo:
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
            return self._upload(existing.name, key, self._create(existing.name), cast(BinaryIO, spool), metadata)

    def _upload(
        self, name: str, key: str, upload_url: str, source: BinaryIO, metadata: Mapping[str, str] | None
    ) -> ObjectInfo:
        archive_hash = hashlib.sha256()
        sink = _BlockSink(self, upload_url)
        writer = _StoredZipWriter(sink.write, key, datetime.now(UTC))
        try:
            writer.start()
            while chunk := source.read(CHUNK_SIZE):
                archive_hash.update(chunk)
                writer.write(chunk)
            writer.finish()
            sink.commit()
        except BaseException:
            # Nothing is committed: FinalizeArtifact is never called, so no artifact exists (GitHub lists only
            # finalized ones) and the blob service discards the uncommitted blocks. The source's own exception
            # propagates unchanged.
            sink.abort()
            raise

        zip_sha256 = sink.sha256.hexdigest()
        finalized = self._twirp(
            "FinalizeArtifact",
            {**self._ids(), "name": name, "size": str(sink.size), "hash": f"sha256:{zip_sha256}"},
            name=name,
        )
        artifact_id = _field(finalized, "artifact_id")
        if not _field(finalized, "ok") or artifact_id in (None, ""):
            raise StorageError(
                f"GitHub did not finalize the artifact {name!r}.",
                hint="Run again; if it persists, check https://www.githubstatus.com.",
            )
        return ObjectInfo(
            key=name,
            size=writer.size,
            modified=datetime.now(UTC),
            metadata={
                **(metadata or {}),
                "sha256": archive_hash.hexdigest(),
                "zip_sha256": zip_sha256,
                "zip_size": str(sink.size),
                "artifact_id": str(artifact_id),
                "artifact_url": self._artifact_url(str(artifact_id)),
            },
        )

    def open(self, key: str) -> BinaryIO:
        artifact = self._find(key)
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
        signed_url = _field(response, "signed_url")
        if not _is_http_url(signed_url):
            raise StorageError(
                f"GitHub gave no usable download URL for the artifact {artifact.name!r}.",
                hint="Run again; if it persists, check https://www.githubstatus.com.",
            )
        spool = self._download(artifact, cast(str, signed_url))
        try:
            return cast(BinaryIO, _open_single_file(spool, artifact.name, key))
        except BaseException:
            spool.close()
            raise

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        newest: dict[str, _Artifact] = {}
        for artifact in self._list_artifacts(None):
            if artifact.name.startswith(prefix):
                seen = newest.get(artifact.name)
                if seen is None or artifact.database_id > seen.database_id:
                    newest[artifact.name] = artifact
        return [self._info(artifact) for artifact in newest.values()]

    def stat(self, key: str) -> ObjectInfo:
        return self._info(self._find(key))

    def delete(self, key: str) -> None:
        self._delete_artifact(self._find(key))

    def _delete_artifact(self, artifact: _Artifact) -> None:
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
        if not _field(response, "ok"):
            raise StorageError(
                f"GitHub did not delete the artifact {artifact.name!r}.",
                hint="Run again, or delete it in the run's summary page.",
            )

    # -- artifacts -------------------------------------------------------------------------------------------

    def _ids(self) -> dict[str, Any]:
        return {
            "workflow_run_backend_id": self._run_backend_id,
            "workflow_job_run_backend_id": self._job_backend_id,
        }

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

    def _find(self, key: str) -> _Artifact:
        found = self._matching(key)
        if not found:
            raise ObjectNotFound(f"No artifact named {key!r} in this workflow run.")
        return found[0]

    def _matching(self, name: str) -> builtins.list[_Artifact]:
        """The artifacts named `name`, newest first (the toolkit, too, takes the newest)."""
        if not name:
            return []
        matches = [artifact for artifact in self._list_artifacts(name) if artifact.name == name]
        return sorted(matches, key=lambda artifact: artifact.database_id, reverse=True)

    def _list_artifacts(self, name_filter: str | None) -> builtins.list[_Artifact]:
        request = self._ids()
        if name_filter is not None:
            request["name_filter"] = name_filter
        response = self._twirp("ListArtifacts", request)
        raw = _field(response, "artifacts") or []
        if not isinstance(raw, builtins.list):
            raise StorageError("GitHub answered ListArtifacts with something that is not a list.")
        return [self._parse_artifact(item) for item in raw if isinstance(item, dict)]

    def _parse_artifact(self, item: Mapping[str, Any]) -> _Artifact:
        def text(field: str) -> str:
            value = _field(item, field)
            return value if isinstance(value, str) else ""

        def integer(field: str) -> int:
            # int64 is a JSON string in proto3 JSON; other servers send numbers.
            value = _field(item, field)
            try:
                return int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else 0
            except ValueError:
                return 0

        return _Artifact(
            name=text("name"),
            database_id=integer("database_id"),
            size=integer("size"),
            created_at=_parse_timestamp(text("created_at")),
            digest=text("digest"),
            run_backend_id=text("workflow_run_backend_id") or self._run_backend_id,
            job_backend_id=text("workflow_job_run_backend_id") or self._job_backend_id,
        )

    def _info(self, artifact: _Artifact) -> ObjectInfo:
        metadata = {
            "zip_size": str(artifact.size),
            "artifact_id": str(artifact.database_id),
            "artifact_url": self._artifact_url(str(artifact.database_id)),
        }
        if artifact.digest.startswith("sha256:"):
            metadata["zip_sha256"] = artifact.digest.removeprefix("sha256:")
        return ObjectInfo(
            key=artifact.name,
            size=_archive_size(artifact.size),
            modified=artifact.created_at,
            metadata=metadata,
        )

    # -- Twirp -----------------------------------------------------------------------------------------------

    def _twirp(
        self, method: str, request: Mapping[str, Any], *, name: str = "", missing_raises: bool = False
    ) -> Mapping[str, Any]:
        """One Twirp call, retried as the toolkit retries it."""
        url = f"{self._origin}/twirp/{SERVICE}/{method}"
        body = json.dumps(_without_defaults(request)).encode()
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "User-Agent": f"chrono-ci/{__version__}",
        }
        error = ""
        for attempt in range(self._attempts):
            try:
                response = self._send("POST", url, body, headers, read_limit=64 << 20)
            except _TRANSPORT_ERRORS as exc:
                code = _network_error_code(exc)
                if code is not None:
                    raise StorageError(
                        f"Unable to make request to the GitHub artifact service ({method}): {code}.",
                        hint=_NETWORK_HINT,
                    ) from None
                retryable, error = True, self._redact(_describe_transport_error(exc))
            else:
                try:
                    parsed = json.loads(response.body)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    retryable, error = True, f"({response.status}) the response body is not JSON"
                else:
                    self._mask_signed_urls(parsed)
                    if 200 <= response.status < 300:
                        return parsed
                    message = self._redact(str(parsed.get("msg") or ""))
                    if "insufficient usage" in message:
                        raise StorageError(
                            "The artifact storage quota of this account is used up, so GitHub refused to "
                            f"create the artifact {name!r}.",
                            hint="Delete old artifacts, or shorten retention (ARTIFACT_RETENTION_DAYS), or "
                            "raise the account's Actions storage limit. GitHub recalculates usage every 6-12 "
                            "hours.",
                        )
                    self._raise_for_twirp_error(method, response.status, message, name, missing_raises)
                    retryable = response.status in TWIRP_RETRYABLE_STATUSES
                    error = self._redact(f"({response.status}) {response.reason}") + (f": {message}" if message else "")
            if not retryable:
                raise StorageError(
                    f"The GitHub artifact service refused {method}: {error}.",
                    hint="Run again; if it persists, check https://www.githubstatus.com.",
                )
            if attempt + 1 >= self._attempts:
                raise StorageError(
                    f"The GitHub artifact service failed {method} after {self._attempts} attempts: {error}.",
                    hint="GitHub may be having trouble (https://www.githubstatus.com); run the job again later.",
                )
            delay = self._retry_delay(attempt)
            self._log(
                f"Attempt {attempt + 1} of {self._attempts} of {method} failed: {error}. Retrying in {delay:.1f} s."
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for_twirp_error(self, method: str, status: int, message: str, name: str, missing_raises: bool) -> None:
        if status == 409 or "already exists" in message:
            raise _NameTaken(
                f"An artifact named {name!r} already exists in this workflow run.",
                hint="Artifact names are unique per workflow run, not per job: set ARTIFACT_NAME per matrix "
                "job (for example, include ${{ matrix.* }} values or ${{ github.job }}), or leave it unset "
                "for a unique default.",
            )
        if status == 404 and missing_raises:
            raise ObjectNotFound(f"No artifact named {name!r} in this workflow run.")
        if status in (401, 403):
            raise StorageError(
                f"The GitHub artifact service refused the runtime token ({status}) on {method}"
                + (f": {message}." if message else "."),
                hint="ACTIONS_RUNTIME_TOKEN is valid only for the job it was issued to and only while that "
                "job runs: pass the runner's variables through unchanged, in the same job.",
            )

    def _retry_delay(self, attempt: int) -> float:
        # The toolkit's schedule: the base first, then a random point in [base*1.5^n, base*1.5^(n+1)).
        if attempt == 0:
            return self._retry_base_delay
        low = self._retry_base_delay * RETRY_MULTIPLIER**attempt
        return random.uniform(low, low * RETRY_MULTIPLIER)

    def _mask_signed_urls(self, body: Mapping[str, Any]) -> None:
        for field in ("signed_upload_url", "signed_url"):
            value = _field(body, field)
            if isinstance(value, str):
                self._mask_signature(value)

    def _mask_signature(self, url: str) -> None:
        # Masked in every spelling a log line could show it in, as the toolkit's maskSigUrl does.
        raw = {match.group(1) for match in re.finditer(r"[?&]sig=([^&#]+)", url, flags=re.IGNORECASE)}
        for value in raw:
            decoded = urllib.parse.unquote(value)
            for spelling in (decoded, urllib.parse.quote(decoded, safe="-_.!~*'()"), value):
                if spelling and spelling not in self._secrets:
                    self._secrets.add(spelling)
                    self._mask(spelling)

    def _redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        read_limit: int,
    ) -> _Response:
        with self._request(method, url, body, headers) as (status, reason, response_headers, stream):
            return _Response(status, reason, response_headers, stream.read(read_limit))

    @contextlib.contextmanager
    def _request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Iterator[tuple[int, str, Message, IO[bytes]]]:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        host = urllib.parse.urlsplit(url).hostname or ""
        # A proxy from the environment must not see loopback traffic (the runner's own services, tests).
        opener = self._direct_opener if _is_loopback(host) else self._opener
        failed: urllib.error.HTTPError | None = None
        try:
            response = opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            failed = exc
        except urllib.error.URLError as exc:
            # Only the socket error goes on: the request (and a signed URL in it) stays behind.
            reason = exc.reason
            raise (reason if isinstance(reason, OSError) else OSError(str(reason))) from None
        if failed is not None:
            # An error status is an answer like any other: the caller reads status and body, never the URL.
            with contextlib.closing(failed):
                yield failed.code, str(failed.reason), failed.headers, failed
            return
        with response:
            yield response.status, str(response.reason), response.headers, response

    def _blob_call(self, what: str, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> None:
        """A blob write (Put Block, Put Block List), retried like the Azure SDK retries it."""
        headers = {"x-ms-version": AZURE_API_VERSION, **headers}
        error = ""
        for attempt in range(self._attempts):
            try:
                response = self._send(method, url, body, headers, read_limit=1 << 20)
            except _TRANSPORT_ERRORS as exc:
                retryable, error = True, self._redact(_describe_transport_error(exc))
            else:
                if 200 <= response.status < 300:
                    return
                retryable = response.status in BLOB_RETRYABLE_STATUSES
                error = self._redact(_describe_blob_error(response))
                if response.status == 403:
                    raise StorageError(
                        f"Blob storage refused the artifact upload ({what}): {error}.",
                        hint="The signed upload URL may have expired during a very long upload, or a proxy "
                        "changed the request. Run again.",
                    )
            if not retryable:
                raise StorageError(
                    f"Blob storage refused the artifact upload ({what}): {error}.",
                    hint="Run again; if it persists, report it with this message.",
                )
            if attempt + 1 >= self._attempts:
                raise StorageError(
                    f"Uploading the artifact to blob storage failed ({what}) after {self._attempts} attempts: {error}.",
                    hint="Blob storage may be having trouble (https://www.githubstatus.com); run again "
                    "later. " + _NETWORK_HINT,
                )
            delay = self._retry_delay(attempt)
            self._log(f"{what} failed: {error}. Retrying in {delay:.1f} s.")
            time.sleep(delay)

    def _temp_file(self) -> IO[bytes]:
        """An anonymous 0600 temp file: unlinked at once, so gone when closed, even if never closed."""
        try:
            return tempfile.TemporaryFile(dir=self._temp_dir, prefix=".chrono-artifact-")
        except OSError as exc:
            where = self._temp_dir or tempfile.gettempdir()
            raise StorageError(
                f"Cannot create a temporary file in {where}: {exc.strerror or exc}.",
                hint="Make RUNNER_TEMP (or TMPDIR) a writable folder with room for one archive.",
            ) from exc

    def _spool_write(self, spool: IO[bytes], chunk: bytes, name: str) -> None:
        # A full disk is not a network hiccup: it must not be retried as one.
        try:
            spool.write(chunk)
        except OSError as exc:
            raise StorageError(
                f"Cannot spool the artifact {name!r} to {self._temp_dir or tempfile.gettempdir()}: "
                f"{exc.strerror or exc}.",
                hint="Give RUNNER_TEMP (or TMPDIR) room for one archive.",
            ) from exc

    def _download(self, artifact: _Artifact, signed_url: str) -> IO[bytes]:
        """The artifact's zip, spooled to a temp file so that only one chunk is ever in memory."""
        spool = self._temp_file()
        try:
            error = ""
            for attempt in range(self._attempts):
                spool.seek(0)
                spool.truncate()
                digest = hashlib.sha256()
                size = 0
                try:
                    with self._request("GET", signed_url, None, {"x-ms-version": AZURE_API_VERSION}) as (
                        status,
                        reason,
                        headers,
                        stream,
                    ):
                        if 200 <= status < 300:
                            while chunk := stream.read(CHUNK_SIZE):
                                digest.update(chunk)
                                size += len(chunk)
                                self._spool_write(spool, chunk, artifact.name)
                        else:
                            body = stream.read(1 << 20)
                            raise _BlobStatus(_Response(status, reason, headers, body))
                except _BlobStatus as failed:
                    error = self._redact(_describe_blob_error(failed.response))
                    if failed.response.status not in BLOB_RETRYABLE_STATUSES:
                        break
                except _TRANSPORT_ERRORS as exc:
                    error = self._redact(_describe_transport_error(exc))
                else:
                    expected = artifact.digest.removeprefix("sha256:") if artifact.digest else ""
                    if expected and digest.hexdigest() != expected:
                        error = f"the download's sha256 {digest.hexdigest()} is not the artifact's {expected}"
                    elif artifact.size and size != artifact.size:
                        error = f"downloaded {size} bytes, the artifact has {artifact.size}"
                    else:
                        spool.flush()
                        spool.seek(0)
                        return spool
                if attempt + 1 < self._attempts:
                    delay = self._retry_delay(attempt)
                    self._log(f"Downloading the artifact {artifact.name!r} failed: {error}. Retrying in {delay:.1f} s.")
                    time.sleep(delay)
            raise StorageError(
                f"Downloading the artifact {artifact.name!r} failed: {error}.",
                hint="Run again; the artifact may have expired or been deleted meanwhile.",
            )
        except BaseException:
            spool.close()
            raise


class _NameTaken(StorageError):
    """The service's 409: the name is used in this run (by this job, `put` replaces it)."""


class _BlobStatus(Exception):
    def __init__(self, response: _Response) -> None:
        super().__init__(response.status)
        self.response = response


class _BlockSink:
    """Where the zip's bytes go: hashed, counted, cut into blocks, each sent by Put Block when full."""

    def __init__(self, storage: ArtifactStorage, upload_url: str) -> None:
        self._storage = storage
        self._url = upload_url
        self._separator = "&" if urllib.parse.urlsplit(upload_url).query else "?"
        self._buffer = bytearray()
        # Azure wants every block id of a blob to have the same length: a random prefix, then the index.
        self._prefix = uuid.uuid4().hex
        self._block_ids: list[str] = []
        self._aborted = False
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._aborted:
            return
        self.sha256.update(data)
        self.size += len(data)
        self._buffer += data
        block_size = self._storage._block_size
        while len(self._buffer) >= block_size:
            block = bytes(memoryview(self._buffer)[:block_size])
            del self._buffer[:block_size]
            self._put_block(block)

    def abort(self) -> None:
        self._aborted = True
        self._buffer = bytearray()

    def commit(self) -> None:
        if self._buffer:
            self._put_block(bytes(self._buffer))
            self._buffer = bytearray()
        body = (
            '<?xml version="1.0" encoding="utf-8"?><BlockList>'
            + "".join(f"<Latest>{xml_escape(block_id)}</Latest>" for block_id in self._block_ids)
            + "</BlockList>"
        ).encode()
        self._storage._blob_call(
            "Put Block List",
            "PUT",
            f"{self._url}{self._separator}comp=blocklist",
            body,
            {
                "Content-Type": "application/xml",
                "Content-Length": str(len(body)),
                "x-ms-blob-content-type": "application/zip",
            },
        )

    def _put_block(self, block: bytes) -> None:
        index = len(self._block_ids)
        if index >= MAX_BLOCKS:
            raise StorageError(
                f"The archive needs more than {MAX_BLOCKS} blocks of {self._storage._block_size} bytes, the "
                "blob service's limit.",
                hint="Use a larger artifact block size (up to 4000 MiB), or store archives this large in S3.",
            )
        block_id = base64.b64encode(f"{self._prefix}{index:016d}".encode()).decode()
        self._storage._blob_call(
            f"Put Block {index}",
            "PUT",
            f"{self._url}{self._separator}comp=block&blockid={urllib.parse.quote(block_id, safe='')}",
            block,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(block))},
        )
        self._block_ids.append(block_id)


class _ArchiveReader(io.BufferedIOBase):
    """The one file inside a downloaded artifact zip; closing it closes, and so removes, the spooled zip."""

    def __init__(self, spool: IO[bytes], archive: zipfile.ZipFile, member: IO[bytes], name: str) -> None:
        super().__init__()
        self._spool = spool
        self._archive = archive
        self._member = member
        self._name = name

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        return self._guard(lambda: self._member.read(-1 if size is None else size))

    def read1(self, size: int = -1, /) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._member.close()
                self._archive.close()
            finally:
                self._spool.close()
        super().close()

    def _guard(self, operation: Callable[[], bytes]) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        try:
            return operation()
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise StorageError(
                f"The artifact {self._name!r} is damaged: {exc}.",
                hint="Use another backup; this one cannot be trusted.",
            ) from exc


def _open_single_file(spool: IO[bytes], artifact_name: str, key: str) -> _ArchiveReader:
    try:
        archive = zipfile.ZipFile(spool)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise StorageError(
            f"The artifact {artifact_name!r} is not a valid zip file: {exc}.",
            hint="Was it uploaded by chrono-ci? Use another backup.",
        ) from exc
    try:
        files = [info for info in archive.infolist() if not info.is_dir()]
        chosen = next((info for info in files if info.filename == key), None)
        if chosen is None and len(files) == 1:
            chosen = files[0]
        if chosen is None:
            raise StorageError(
                f"The artifact {artifact_name!r} holds {len(files)} files, not the one archive chrono-ci uploads.",
                hint="Was it uploaded by chrono-ci? Use another backup.",
            )
        member = archive.open(chosen)
    except BaseException:
        archive.close()
        raise
    return _ArchiveReader(spool, archive, member, artifact_name)


class _StoredZipWriter:
    """A zip of one STORED file, written front to back with no seeking, in a fixed layout.

    The size is unknown until the source ends and nothing already sent can be rewritten, so the entry uses a
    data descriptor and is always zip64: the code path of a 5 GiB archive is the one every small test runs.
    The name fields are padded to a fixed room with an extra field readers skip, which makes the zip exactly
    `_ZIP_OVERHEAD` bytes larger than the file it holds, whatever the file is called: `list` and `stat` can
    then give the archive's size from the size the service reports, without downloading anything.
    """

    def __init__(self, out: Callable[[bytes], None], name: str, when: datetime) -> None:
        self._out = out
        self._name = name.encode()
        self._flags = 0x0008 | (0x0800 if not name.isascii() else 0)
        self._dos_time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
        self._dos_date = ((max(when.year, 1980) - 1980) << 9) | (when.month << 5) | when.day
        self._crc = 0
        self.size = 0

    def start(self) -> None:
        self._out(
            struct.pack(
                "<IHHHHHIIIHH",
                _LOCAL_HEADER,
                _ZIP64_VERSION,
                self._flags,
                0,  # stored
                self._dos_time,
                self._dos_date,
                0,  # CRC and sizes follow the data, in the data descriptor
                _MAX32,
                _MAX32,
                len(self._name),
                _LOCAL_EXTRA + self._padding_size(),
            )
            + self._name
            + struct.pack("<HHQQ", _ZIP64_EXTRA, 16, 0, 0)
            + self._padding()
        )

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self.size += len(data)
        self._out(data)

    def finish(self) -> None:
        local_size = _LOCAL_FIXED + len(self._name) + _LOCAL_EXTRA + self._padding_size()
        directory_offset = local_size + self.size + _DESCRIPTOR_SIZE
        directory = (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                _CENTRAL_HEADER,
                (3 << 8) | _ZIP64_VERSION,  # made on Unix, so that the mode below counts
                _ZIP64_VERSION,
                self._flags,
                0,
                self._dos_time,
                self._dos_date,
                self._crc,
                _MAX32,
                _MAX32,
                len(self._name),
                _CENTRAL_EXTRA + self._padding_size(),
                0,  # comment
                0,  # disk
                0,  # internal attributes
                (stat_module.S_IFREG | 0o600) << 16,  # unzipped by hand, a backup stays private
                _MAX32,
            )
            + self._name
            + struct.pack("<HHQQQ", _ZIP64_EXTRA, 24, self.size, self.size, 0)
            + self._padding()
        )
        end64_offset = directory_offset + len(directory)
        self._out(
            struct.pack("<IIQQ", _DESCRIPTOR, self._crc, self.size, self.size)
            + directory
            + struct.pack(
                "<IQHHIIQQQQ",
                _END64,
                _END64_SIZE - 12,
                (3 << 8) | _ZIP64_VERSION,
                _ZIP64_VERSION,
                0,
                0,
                1,
                1,
                len(directory),
                directory_offset,
            )
            + struct.pack("<IIQI", _END64_LOCATOR, 0, end64_offset, 1)
            # The classic end record points readers (Go's, Windows') at the zip64 records.
            + struct.pack("<IHHHHIIH", _END, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, _MAX32, _MAX32, 0)
        )

    def _padding_size(self) -> int:
        return 4 + _NAME_ROOM - len(self._name)

    def _padding(self) -> bytes:
        return struct.pack("<HH", _PADDING_EXTRA, _NAME_ROOM - len(self._name)) + bytes(_NAME_ROOM - len(self._name))


_LOCAL_HEADER, _DESCRIPTOR, _CENTRAL_HEADER = 0x04034B50, 0x08074B50, 0x02014B50
_END64, _END64_LOCATOR, _END = 0x06064B50, 0x07064B50, 0x06054B50
_ZIP64_VERSION = 45
_ZIP64_EXTRA = 0x0001
# Any id PKWARE has not assigned; readers skip extra fields they do not know.
_PADDING_EXTRA = 0x6370
_MAX32 = 0xFFFFFFFF
_NAME_ROOM = 255  # bytes of file name, the longest most file systems allow
_LOCAL_FIXED, _CENTRAL_FIXED, _DESCRIPTOR_SIZE = 30, 46, 24
_LOCAL_EXTRA, _CENTRAL_EXTRA = 20, 28  # the zip64 extra fields
_END64_SIZE, _END64_LOCATOR_SIZE, _END_SIZE = 56, 20, 22
_ZIP_OVERHEAD = (
    (_LOCAL_FIXED + _LOCAL_EXTRA + 4 + _NAME_ROOM)
    + _DESCRIPTOR_SIZE
    + (_CENTRAL_FIXED + _CENTRAL_EXTRA + 4 + _NAME_ROOM)
    + _END64_SIZE
    + _END64_LOCATOR_SIZE
    + _END_SIZE
)


def _archive_size(zip_size: int) -> int:
    # Exact for the zips this module writes; an artifact made by another tool gets its zip size.
    return zip_size - _ZIP_OVERHEAD if zip_size >= _ZIP_OVERHEAD else zip_size


def _is_http_url(value: Any) -> bool:
    # Checked before use, because urllib's complaint about a bad URL quotes all of it, signature included.
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _field(body: Mapping[str, Any], snake: str) -> Any:
    # GitHub answers in snake_case; act and Gitea in protojson lowerCamelCase.
    if snake in body:
        return body[snake]
    head, *rest = snake.split("_")
    return body.get(head + "".join(part.capitalize() for part in rest))


def _without_defaults(request: Mapping[str, Any]) -> dict[str, Any]:
    # The toolkit serializes with emitDefaultValues: false.
    return {key: value for key, value in request.items() if value not in (None, "", 0, False)}


def _parse_timestamp(text: str) -> datetime:
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        return datetime.fromtimestamp(0, UTC)
    whole, fraction, zone = match.groups()
    # Protobuf timestamps may carry nanoseconds; datetime keeps microseconds.
    micro = f".{(fraction or '0')[:6].ljust(6, '0')}"
    return datetime.fromisoformat(whole + micro + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)


def _days(environ: Mapping[str, str], var: str) -> int | None:
    value = environ.get(var, "").strip()
    if not value:
        return None
    try:
        days = int(value)
    except ValueError:
        raise ConfigError(
            f"{var} must be a whole number of days, not {value!r}.",
            hint=f"Set {var} to a number such as 7, or leave it unset.",
        ) from None
    if days < 1:
        raise ConfigError(f"{var} must be at least 1, not {days}.", hint=f"Set {var} to 1 or more, or unset it.")
    return days


def _network_error_code(exc: BaseException) -> str | None:
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, socket.gaierror):
        return "ENOTFOUND"
    if isinstance(exc, TimeoutError):
        return "ETIMEDOUT"
    return _NETWORK_ERRNOS.get(exc.errno or 0) or ("ECONNRESET" if isinstance(exc, ConnectionResetError) else None)


def _describe_transport_error(exc: BaseException) -> str:
    detail = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    code = _network_error_code(exc)
    return f"{code} ({detail})" if code else f"{type(exc).__name__}: {detail}"


def _describe_blob_error(response: _Response) -> str:
    code = response.headers.get("x-ms-error-code") if response.headers else None
    if not code:
        match = re.search(rb"<Code>([^<]{1,100})</Code>", response.body)
        code = match.group(1).decode("utf-8", "replace") if match else None
    return f"({response.status}) {response.reason}" + (f" {code}" if code else "")
