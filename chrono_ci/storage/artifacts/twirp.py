"""The artifact service's Twirp API (CreateArtifact, FinalizeArtifact, ListArtifacts, GetSignedArtifactURL,
DeleteArtifact): JSON calls authenticated with the runtime token, retried as the toolkit retries them
(artifact-twirp-client.ts), the signed URLs in their answers masked.

TwirpClient is a part of ArtifactStorage (chrono_ci.storage.artifacts.store), kept apart because it is read apart.
"""

from __future__ import annotations

import builtins
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chrono_ci import __version__
from chrono_ci.errors import ObjectNotFound, StorageError
from chrono_ci.storage.artifacts.transport import (
    NETWORK_HINT,
    TRANSPORT_ERRORS,
    HttpTransport,
    describe_transport_error,
    network_error_code,
)
from chrono_ci.timestamps import parse_instant

SERVICE = "github.actions.results.api.v1.ArtifactService"
# The toolkit's Twirp retry policy (artifact-twirp-client.ts).
TWIRP_ATTEMPTS = 5
TWIRP_BASE_DELAY = 3.0
TWIRP_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Artifact:
    name: str
    database_id: int
    size: int
    created_at: datetime
    digest: str
    run_backend_id: str
    job_backend_id: str


class NameTaken(StorageError):
    """The service's 409: the name is used in this run (by this job, `put` replaces it)."""


def field_of(body: Mapping[str, Any], snake: str) -> Any:
    # GitHub answers in snake_case; act and Gitea in protojson lowerCamelCase.
    if snake in body:
        return body[snake]
    head, *rest = snake.split("_")
    return body.get(head + "".join(part.capitalize() for part in rest))


def _without_defaults(request: Mapping[str, Any]) -> dict[str, Any]:
    # The toolkit serializes with emitDefaultValues: false.
    return {key: value for key, value in request.items() if value not in (None, "", 0, False)}


class TwirpClient(HttpTransport):
    _origin: str
    _token: str
    _mask: Callable[[str], None]
    _run_backend_id: str
    _job_backend_id: str

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
            except TRANSPORT_ERRORS as exc:
                code = network_error_code(exc)
                if code is not None:
                    raise StorageError(
                        f"Unable to make request to the GitHub artifact service ({method}): {code}.",
                        hint=NETWORK_HINT,
                    ) from None
                retryable, error = True, self._redact(describe_transport_error(exc))
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
            raise NameTaken(
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

    def _mask_signed_urls(self, body: Mapping[str, Any]) -> None:
        for field in ("signed_upload_url", "signed_url"):
            value = field_of(body, field)
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

    def _ids(self) -> dict[str, Any]:
        return {
            "workflow_run_backend_id": self._run_backend_id,
            "workflow_job_run_backend_id": self._job_backend_id,
        }

    def _list_artifacts(self, name_filter: str | None) -> builtins.list[Artifact]:
        request = self._ids()
        if name_filter is not None:
            request["name_filter"] = name_filter
        response = self._twirp("ListArtifacts", request)
        raw = field_of(response, "artifacts") or []
        if not isinstance(raw, builtins.list):
            raise StorageError("GitHub answered ListArtifacts with something that is not a list.")
        return [self._parse_artifact(item) for item in raw if isinstance(item, dict)]

    def _parse_artifact(self, item: Mapping[str, Any]) -> Artifact:
        def text(field: str) -> str:
            value = field_of(item, field)
            return value if isinstance(value, str) else ""

        def integer(field: str) -> int:
            # int64 is a JSON string in proto3 JSON; other servers send numbers.
            value = field_of(item, field)
            try:
                return int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else 0
            except ValueError:
                return 0

        return Artifact(
            name=text("name"),
            database_id=integer("database_id"),
            size=integer("size"),
            created_at=(parse_instant(text("created_at")) or datetime.fromtimestamp(0, UTC)).astimezone(UTC),
            digest=text("digest"),
            run_backend_id=text("workflow_run_backend_id") or self._run_backend_id,
            job_backend_id=text("workflow_job_run_backend_id") or self._job_backend_id,
        )
