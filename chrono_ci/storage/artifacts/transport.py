"""HTTP for the artifact service and blob storage: one request with urllib (no redirect for writes, no proxy for
loopback), answers read whatever their status, transport errors described, the retry schedule, and every secret
the service hands out redacted from what is shown.

HttpTransport is a part of ArtifactStorage (chrono_ci.storage.artifacts.store), kept apart because it is read
apart: it needs the store's settings, declared below.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import random
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import IO

from chrono_ci.secrets import scrub
from chrono_ci.storage.artifacts.runtime import is_loopback

RETRY_MULTIPLIER = 1.5
# The toolkit throws these socket errors at once instead of retrying: waiting does not fix a firewall.
_NETWORK_ERRNOS = {
    errno.ECONNRESET: "ECONNRESET",
    errno.ETIMEDOUT: "ETIMEDOUT",
    errno.ECONNREFUSED: "ECONNREFUSED",
    errno.EHOSTUNREACH: "EHOSTUNREACH",
}
# A dropped connection mid-body surfaces as http.client's own exceptions, not as OSError.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)
NETWORK_HINT = (
    "Make sure the runner can reach all GitHub endpoints: self-hosted runners need outbound HTTPS to the "
    "Actions results and blob storage hosts (listed under domains.actions in https://api.github.com/meta)."
)


@dataclass
class Response:
    status: int
    reason: str
    headers: Message
    body: bytes


class NoRedirectForWrites(urllib.request.HTTPRedirectHandler):
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


def network_error_code(exc: BaseException) -> str | None:
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, socket.gaierror):
        return "ENOTFOUND"
    if isinstance(exc, TimeoutError):
        return "ETIMEDOUT"
    return _NETWORK_ERRNOS.get(exc.errno or 0) or ("ECONNRESET" if isinstance(exc, ConnectionResetError) else None)


def describe_transport_error(exc: BaseException) -> str:
    detail = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    code = network_error_code(exc)
    return f"{code} ({detail})" if code else f"{type(exc).__name__}: {detail}"


class HttpTransport:
    _attempts: int
    _retry_base_delay: float
    _timeout: float
    _secrets: set[str]
    _direct_opener: urllib.request.OpenerDirector
    _opener: urllib.request.OpenerDirector
    _log: Callable[[str], None]

    def _retry_delay(self, attempt: int) -> float:
        # The toolkit's schedule: the base first, then a random point in [base*1.5^n, base*1.5^(n+1)).
        if attempt == 0:
            return self._retry_base_delay
        low = self._retry_base_delay * RETRY_MULTIPLIER**attempt
        return random.uniform(low, low * RETRY_MULTIPLIER)

    def _redact(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        read_limit: int,
    ) -> Response:
        with self._request(method, url, body, headers) as (status, reason, response_headers, stream):
            return Response(status, reason, response_headers, stream.read(read_limit))

    @contextlib.contextmanager
    def _request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Iterator[tuple[int, str, Message, IO[bytes]]]:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
        host = urllib.parse.urlsplit(url).hostname or ""
        # A proxy from the environment must not see loopback traffic (the runner's own services, tests).
        opener = self._direct_opener if is_loopback(host) else self._opener
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
