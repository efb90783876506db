"""The boto3 session an S3 store uses, from the environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with
AWS_SESSION_TOKEN), else GitHub OIDC (AWS_ROLE_ARN), else AWS_PROFILE and boto3's own chain."""

from __future__ import annotations

from collections.abc import Mapping

import boto3
from botocore.exceptions import ProfileNotFound

from chrono_ci.errors import ConfigError
from chrono_ci.storage.s3 import oidc as aws_oidc
from chrono_ci.storage.s3.config import env_value


def session_from_env(environ: Mapping[str, str], region: str | None) -> boto3.Session:
    key_id = env_value(environ, "AWS_ACCESS_KEY_ID")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if key_id or secret:
        if not key_id or not secret:
            have, missing = (
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if key_id
                else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            )
            raise ConfigError(f"{have} is set but {missing} is not.", hint="Set both, or neither.")
        return boto3.Session(
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=env_value(environ, "AWS_SESSION_TOKEN"),
            region_name=region,
        )
    if aws_oidc.wants_github_oidc(environ):
        return aws_oidc.github_oidc_session(environ, region)
    profile = env_value(environ, "AWS_PROFILE")
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as exc:
        raise ConfigError(
            f"AWS_PROFILE={profile!r} names no profile in the AWS config files.",
            hint="Fix AWS_PROFILE, or unset it and give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
        ) from exc
