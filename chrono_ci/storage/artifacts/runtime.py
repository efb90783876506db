"""What the runner gives a Docker container action for artifacts: the runtime token and its backend ids, the
server it runs for, retention settings, and the workflow commands (masks, warnings) the store prints when no
callback is given."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import sys
import urllib.parse
from collections.abc import Mapping

from chrono_ci.errors import ConfigError
from chrono_ci.secrets import add_mask, escape_data

MISSING_ENV_HINT = (
    "GitHub gives ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL only to JavaScript and Docker container "
    "actions: `run:` steps and composite actions do not get them. Use the Docker action "
    "(`uses: owner/chrono-ci@v1`), or expose them to a `run:` step with crazy-max/ghaction-github-runtime. "
    "Self-hosted runners need runner v2.308.0 or later; with act, pass --artifact-server-path. Outside "
    "GitHub Actions, store backups in a local folder or S3 instead."
)


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


def is_supported_server(server_url: str) -> bool:
    # The toolkit treats every host but these as GHES, which has no v4 service; loopback hosts can only be a
    # local test server, which the toolkit allows as *.localhost.
    host = (urllib.parse.urlsplit(server_url).hostname or "").rstrip(".").lower()
    return host == "github.com" or host.endswith(".ghe.com") or is_loopback(host)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def print_mask(value: str) -> None:
    add_mask(value, sys.stdout)


def print_warning(message: str) -> None:
    print(f"::warning::{escape_data(message)}", flush=True)


def print_info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def days_setting(environ: Mapping[str, str], var: str) -> int | None:
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
