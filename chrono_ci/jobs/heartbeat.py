"""Heartbeats: after a backup run, tell a monitoring service (healthchecks.io, Cronitor, Uptime Kuma, a webhook)
that it happened, so that backups which silently stop happening are noticed by the service's missing ping.

HEARTBEAT_URL receives a POST after a successful run; after a failed one, HEARTBEAT_FAIL_URL, or else
HEARTBEAT_URL with `/fail` appended to its path (what healthchecks.io and compatible services expect). The body
is a short JSON summary. A heartbeat that cannot be delivered is a warning, never a failed backup: the backup
is what matters, and a monitoring outage must not make CI report a good backup as failed.

The ping URL itself is a credential (anyone holding a healthchecks.io URL can ping it): it is never printed,
only its scheme and host.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from chrono_ci import __version__
from chrono_ci.errors import ChronoError, ConfigError
from chrono_ci.secrets import scrub_credentials

SUCCESS_ENV = "HEARTBEAT_URL"
FAILURE_ENV = "HEARTBEAT_FAIL_URL"
MAX_BODY_BYTES = 10_000
MAX_STRING = 1_000
MAX_ITEMS = 50
RETRY_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class Endpoint:
    """A checked URL, split into what is sent and what may be shown."""

    url: str  # without user:password@
    authorization: str | None  # a Basic header built from user:password@, if the URL had one
    shown: str  # scheme://host[:port], for messages
    raw: str = ""  # as configured, user:password@ included

    def __repr__(self) -> str:  # a traceback or a debugger must not reveal the ping token either
        return f"Endpoint({self.shown})"


@dataclass(frozen=True)
class HeartbeatConfig:
    success: Endpoint | None
    failure: Endpoint | None

    def endpoint(self, ok: bool) -> Endpoint | None:
        return self.success if ok else self.failure

    def secrets(self) -> list[str]:
        """Text to mask wherever it appears: the URLs as configured and as sent, and their paths, which hold
        the service's token (healthchecks.io's UUID) even when the URL is quoted with another host spelling."""
        found: list[str] = []
        for endpoint in (self.success, self.failure):
            if endpoint is None:
                continue
            parts = urllib.parse.urlsplit(endpoint.url)
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            # Short paths ("/", "/ping") carry no token, and masking them would garble unrelated text.
            found.extend(s for s in (endpoint.raw, endpoint.url, tail if len(tail) >= 8 else "") if s)
        return found


def heartbeat_config(environ: Mapping[str, str]) -> HeartbeatConfig | None:
    """The heartbeat settings in force, or None when none is set. Raises ConfigError for a URL that is not
    http(s): call it before the backup starts, so that a typo stops the run instead of going unnoticed."""
    success_raw = environ.get(SUCCESS_ENV, "").strip()
    failure_raw = environ.get(FAILURE_ENV, "").strip()
    if not success_raw and not failure_raw:
        return None
    success = _endpoint(success_raw, SUCCESS_ENV) if success_raw else None
    if failure_raw:
        failure = _endpoint(failure_raw, FAILURE_ENV)
    elif success is not None:
        failure = _fail_endpoint(success)
    else:
        failure = None
    return HeartbeatConfig(success, failure)


def _endpoint(raw: str, label: str) -> Endpoint:
    parts = urllib.parse.urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        # Not even the scheme is quoted: what precedes a colon may be a token pasted in the wrong place.
        raise ConfigError(
            f"{label} is not an http:// or https:// URL: it does not start with either.",
            hint=f"Set {label} to the ping URL your monitoring service gives, e.g. https://hc-ping.com/UUID.",
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname or ""
    if not host or port == -1 or any(ch.isspace() or not ch.isprintable() for ch in raw):
        raise ConfigError(
            f"{label} is not a valid URL: it has no host, a bad port, or spaces or control characters.",
            hint=f"Copy the ping URL again into {label}; a pasted secret with a trailing newline is a common cause.",
        )
    shown_host = f"[{host}]" if ":" in host else host
    netloc = shown_host + (f":{port}" if port else "")
    authorization = None
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    url = urllib.parse.urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    return Endpoint(url=url, authorization=authorization, shown=f"{scheme}://{netloc}", raw=raw)


def _fail_endpoint(success: Endpoint) -> Endpoint:
    parts = urllib.parse.urlsplit(success.url)
    path = parts.path.rstrip("/") + "/fail"
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    return Endpoint(url=url, authorization=success.authorization, shown=success.shown, raw=url)


def send_heartbeat(
    ok: bool,
    body: dict[str, Any],
    environ: Mapping[str, str],
    warn: Callable[[str], None],
    timeout: float = 10,
) -> bool:
    """POST `body` to the success or the failure URL; True when the service answered 2xx.

    Returns False (and warns) when it could not be delivered, and False silently when no URL applies. Never
    raises for a delivery problem; raises ConfigError only for a malformed URL (see heartbeat_config).
    """
    config = heartbeat_config(environ)
    endpoint = config.endpoint(ok) if config is not None else None
    if endpoint is None:
        return False
    data = encode_body(body, secrets=config.secrets() if config is not None else [])
    headers = {"Content-Type": "application/json", "User-Agent": f"chrono-ci/{__version__}"}
    if endpoint.authorization:
        headers["Authorization"] = endpoint.authorization
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    what = "success" if ok else "failure"
    reason = ""
    for attempt in (1, 2):
        request = urllib.request.Request(endpoint.url, data=data, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=timeout) as response:
                response.read(4096)
                return True
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
            # A 4xx says the URL or the check is wrong: asking again gives the same answer.
            retry = exc.code >= 500 or exc.code == 429
        except (urllib.error.URLError, TimeoutError, OSError, HTTPException) as exc:
            reason = _reason(exc, timeout)
            retry = True
        if not retry or attempt == 2:
            break
        time.sleep(RETRY_DELAY_SECONDS)
    tries = "after a retry" if retry else "without retrying"
    warn(
        f"heartbeat ({what}) not delivered to {endpoint.shown} {tries}: {reason}. "
        "The backup itself is not affected; check the heartbeat URL and that this machine can reach it."
    )
    return False


def _reason(exc: BaseException, timeout: float) -> str:
    inner = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(inner, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(inner, str):
        return inner
    text = str(inner) or type(inner).__name__
    return text


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would also follow a redirect to ftp://; a ping service has no reason to send one there."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(req.full_url, code, "redirect to a non-HTTP URL refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# ------------------------------------------------------------------------------------------------------ body


def backup_body(
    command: str,
    backups: Iterable[Mapping[str, Any]],
    failures: Iterable[tuple[str, ChronoError]],
    duration_seconds: float,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """The heartbeat body of a backup run, built only from fields that are safe to send to a third party.

    `backups` are metadata entries (BackupResult.entry); the host is left out on purpose: the monitoring
    service needs to know which database, not where the servers are.
    """
    masked = [s for s in secrets if s]
    failed = list(failures)
    made = [_backup_summary(entry) for entry in backups]
    return {
        "tool": f"chrono-ci {__version__}",
        "command": command,
        "ok": not failed,
        "duration_seconds": round(duration_seconds, 1),
        "backups": made,
        "failed": [
            {
                "kind": kind,
                "error": scrub_credentials(
                    error.message.splitlines()[0] if error.message else type(error).__name__, masked
                ),
                "exit_code": int(error.exit_code),
            }
            for kind, error in failed
        ],
    }


def _backup_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    verified = entry.get("verified")
    uploads = entry.get("uploads")
    stored = ["local"] if entry.get("local", True) is not False else []
    for upload in uploads if isinstance(uploads, list) else []:
        if isinstance(upload, Mapping) and upload.get("ok"):
            stored.append(str(upload.get("target")))
    tables = entry.get("tables")
    return {
        "kind": entry.get("kind"),
        "database": entry.get("database"),
        "file": entry.get("file"),
        "size_bytes": entry.get("size_bytes"),
        "raw_size_bytes": entry.get("raw_size_bytes"),
        "tables": len(tables) if isinstance(tables, Mapping) else None,
        "rows": sum(v for v in tables.values() if isinstance(v, int)) if isinstance(tables, Mapping) else None,
        "duration_seconds": entry.get("duration_seconds"),
        "verified": f"{verified.get('level')} {'ok' if verified.get('ok') else 'FAILED'}"
        if isinstance(verified, Mapping)
        else None,
        "stored": stored,
    }


def encode_body(body: Mapping[str, Any], secrets: Iterable[str] = ()) -> bytes:
    """JSON of at most MAX_BODY_BYTES, with URL credentials and `password=...` pairs masked everywhere."""
    masked = [s for s in secrets if s]
    clean = _sanitise(dict(body), masked, depth=0)
    data = json.dumps(clean, ensure_ascii=False, default=str).encode()
    if len(data) <= MAX_BODY_BYTES:
        return data
    # Cut whole fields rather than bytes: a body cut mid-string would not be JSON any more.
    brief = {k: v for k, v in clean.items() if not isinstance(v, dict | list)}
    brief["truncated"] = True
    data = json.dumps(brief, ensure_ascii=False, default=str).encode()
    return data if len(data) <= MAX_BODY_BYTES else json.dumps({"ok": body.get("ok"), "truncated": True}).encode()


def _sanitise(value: Any, secrets: list[str], depth: int) -> Any:
    if isinstance(value, str):
        return scrub_credentials(value, secrets)[:MAX_STRING]
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= 5:
        return "..."
    if isinstance(value, Mapping):
        return {
            scrub_credentials(str(k), secrets)[:MAX_STRING]: _sanitise(v, secrets, depth + 1)
            for k, v in list(value.items())[:MAX_ITEMS]
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_sanitise(v, secrets, depth + 1) for v in list(value)[:MAX_ITEMS]]
    return scrub_credentials(str(value), secrets)[:MAX_STRING]
