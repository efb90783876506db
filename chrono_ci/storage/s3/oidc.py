"""AWS credentials from GitHub Actions OIDC: the job's ID token, exchanged at STS for a role's keys.

This saves users a separate `aws-actions/configure-aws-credentials` step and long-lived keys in secrets. The
STS call is unsigned (the JWT is the proof), so no credentials are needed beforehand. Credentials refresh by
fetching a new JWT and assuming the role again: GitHub's tokens live minutes, a dump can take hours.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import boto3
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import CredentialProvider, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from chrono_ci.errors import ConfigError, StorageError
from chrono_ci.secrets import add_mask

__all__ = ["DEFAULT_AUDIENCE", "github_oidc_session", "wants_github_oidc"]

log = logging.getLogger(__name__)

DEFAULT_AUDIENCE = "sts.amazonaws.com"
# The same default as aws-actions/configure-aws-credentials, so existing trust policies keep matching.
DEFAULT_SESSION_NAME = "GitHubActions"
DEFAULT_DURATION_SECONDS = 3600
TOKEN_ATTEMPTS = 4
TOKEN_TIMEOUT_SECONDS = 15.0

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_NO_OIDC_HINT = (
    "Give the job `permissions: id-token: write` (in the workflow or the job). Pull requests from forks never "
    "get an OIDC token: skip the backup there, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead."
)


def wants_github_oidc(environ: Mapping[str, str]) -> bool:
    """A role to assume and no keys: GitHub OIDC, unless botocore's own web-identity provider has a token file."""
    return (
        bool(environ.get("AWS_ROLE_ARN"))
        and not environ.get("AWS_ACCESS_KEY_ID")
        and not environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    )


def github_oidc_session(environ: Mapping[str, str], region: str | None) -> boto3.Session:
    """A boto3 session whose credentials come from assuming AWS_ROLE_ARN with the job's OIDC token.

    Assumes the role once right away, so a refused trust policy fails the run before any dump starts.
    """
    role_arn = environ.get("AWS_ROLE_ARN", "").strip()
    if not _ROLE_ARN.fullmatch(role_arn):
        raise ConfigError(
            f"AWS_ROLE_ARN={role_arn!r} is not an IAM role ARN.",
            hint="Use the role's full ARN, like arn:aws:iam::123456789012:role/backup-writer.",
        )
    request_url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    request_token = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not request_url or not request_token:
        missing = "ACTIONS_ID_TOKEN_REQUEST_URL" if not request_url else "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
        raise ConfigError(
            f"AWS_ROLE_ARN is set but this job cannot get a GitHub OIDC token: {missing} is not set.",
            hint=_NO_OIDC_HINT,
        )
    session_name = environ.get("AWS_ROLE_SESSION_NAME", "").strip() or DEFAULT_SESSION_NAME
    if not _SESSION_NAME.fullmatch(session_name):
        raise ConfigError(
            f"AWS_ROLE_SESSION_NAME={session_name!r} is not a valid role session name.",
            hint="Use 2 to 64 characters: letters, digits and + = , . @ _ -.",
        )
    exchange = _RoleExchange(
        role_arn=role_arn,
        session_name=session_name,
        token_url=request_url,
        request_token=request_token,
        audience=environ.get("AWS_OIDC_AUDIENCE", "").strip() or DEFAULT_AUDIENCE,
        region=region,
        sts_endpoint=environ.get("AWS_ENDPOINT_URL_STS", "").strip() or None,
        mask_secrets=environ.get("GITHUB_ACTIONS") == "true",
    )
    credentials = RefreshableCredentials.create_from_metadata(
        metadata=exchange.fetch(), refresh_using=exchange.fetch, method=_GitHubOIDCProvider.METHOD
    )
    core = botocore.session.Session()
    # The resolver is botocore's public extension point; first place means the environment and profiles of
    # the machine cannot shadow the role the user asked for.
    core.get_component("credential_provider").insert_before("env", _GitHubOIDCProvider(credentials))
    return boto3.Session(botocore_session=core, region_name=region)


class _GitHubOIDCProvider(CredentialProvider):
    METHOD = "github-oidc"
    CANONICAL_NAME = "custom-github-oidc"

    def __init__(self, credentials: RefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


class _RoleExchange:
    def __init__(
        self,
        *,
        role_arn: str,
        session_name: str,
        token_url: str,
        request_token: str,
        audience: str,
        region: str | None,
        sts_endpoint: str | None,
        mask_secrets: bool,
    ) -> None:
        self.role_arn = role_arn
        self.session_name = session_name
        self.token_url = token_url
        self.request_token = request_token
        self.audience = audience
        self.region = region or "us-east-1"
        self.sts_endpoint = sts_endpoint
        self.mask_secrets = mask_secrets

    def fetch(self) -> dict[str, Any]:
        """Botocore's refresh callback: a fresh JWT, a fresh AssumeRoleWithWebIdentity."""
        jwt = self._github_token()
        self._mask(jwt)
        sts = boto3.Session(region_name=self.region).client(
            "sts",
            endpoint_url=self.sts_endpoint,
            config=Config(signature_version=UNSIGNED, retries={"mode": "standard", "max_attempts": 5}),
        )
        where = self.sts_endpoint or f"AWS STS ({self.region})"
        try:
            response = sts.assume_role_with_web_identity(
                RoleArn=self.role_arn,
                RoleSessionName=self.session_name,
                WebIdentityToken=jwt,
                DurationSeconds=DEFAULT_DURATION_SECONDS,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", "")
            raise StorageError(
                f"AWS STS refused to let this job assume {self.role_arn} ({code}: {message}).",
                hint="Check the role's trust policy: the federated principal "
                "token.actions.githubusercontent.com, the condition "
                f"token.actions.githubusercontent.com:aud = {self.audience}, and a :sub condition that matches "
                "this repository and branch or environment (repo:OWNER/REPO:ref:refs/heads/BRANCH).",
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"Cannot reach {where} to assume {self.role_arn}: {exc}.",
                hint="Check the network, AWS_REGION and AWS_ENDPOINT_URL_STS if set.",
            ) from exc
        creds = response["Credentials"]
        self._mask(creds["SecretAccessKey"])
        self._mask(creds["SessionToken"])
        log.debug("assumed %s with a GitHub OIDC token until %s", self.role_arn, creds["Expiration"])
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    def _github_token(self) -> str:
        separator = "&" if "?" in self.token_url else "?"
        url = f"{self.token_url}{separator}audience={urllib.parse.quote(self.audience, safe='')}"
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self.request_token}", "Accept": "application/json"}
        )
        failure = ""
        for attempt in range(TOKEN_ATTEMPTS):
            if attempt:
                time.sleep(min(2.0**attempt, 10.0))
            try:
                with urllib.request.urlopen(request, timeout=TOKEN_TIMEOUT_SECONDS) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:
                failure = f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500 and exc.code != 429:
                    break
                continue
            except (urllib.error.URLError, OSError) as exc:
                failure = str(getattr(exc, "reason", exc))
                continue
            try:
                value = json.loads(body)["value"]
            except (ValueError, KeyError, TypeError):
                failure = "the answer had no token in it"
                break
            if isinstance(value, str) and value:
                return value
            failure = "the answer had no token in it"
            break
        # Neither the URL's query nor the request token goes into the message: both are the runner's secrets.
        host = urllib.parse.urlsplit(self.token_url).netloc
        raise StorageError(
            f"Could not get a GitHub OIDC token from {host}: {failure}.",
            hint="The token service of the runner failed; re-run the job. " + _NO_OIDC_HINT,
        )

    def _mask(self, value: str) -> None:
        # A workflow command: the runner replaces the value with *** in every later log line.
        if self.mask_secrets and value:
            add_mask(value, sys.stdout)
