"""The Action's inputs (the same list as action.yml): the chrono-ci setting each one fills and how its value is
checked, read from the runner's INPUT_<NAME> variables, and the secrets to mask before anything is said."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from chrono_ci.action.workflow import url_secrets
from chrono_ci.errors import ConfigError

InputKind = Literal["text", "bool", "int", "choice", "list", "url", "secret"]


@dataclass(frozen=True)
class Input:
    """One input of action.yml: the chrono-ci setting it fills and how its value is checked."""

    name: str
    env: str | None = None  # the environment setting it sets; None: the Action itself reads it
    kind: InputKind = "text"
    choices: tuple[str, ...] = ()
    minimum: int = 0

    @property
    def secret(self) -> bool:
        return self.kind in ("url", "secret")


COMMANDS = ("backup", "verify", "restore", "list")
DATABASES = ("postgres", "supabase", "all")
UPLOAD_TARGETS = ("none", "artifact", "s3")
# The same list as action.yml; tests/test_action.py keeps the two (and the docs) in step.
INPUTS: dict[str, Input] = {
    spec.name: spec
    for spec in (
        Input("command", kind="choice", choices=COMMANDS),
        Input("databases", kind="choice", choices=DATABASES),
        Input("database-url", "DATABASE_URL", "url"),
        Input("supabase-db-url", "SUPABASE_DB_URL", "url"),
        Input("backup-dir", "BACKUP_DIR"),
        Input("max-backups", "MAX_BACKUPS", "int", minimum=1),
        Input("compression", "BACKUP_COMPRESSION", "choice", choices=("zstd", "gzip", "none")),
        Input("compression-level", "BACKUP_COMPRESSION_LEVEL", "int", minimum=1),
        Input("verify-level", "BACKUP_VERIFY", "choice", choices=("check", "restore")),
        Input("scratch-database-url", "SCRATCH_DATABASE_URL", "url"),
        Input("restore-target-url", "RESTORE_TARGET_URL", "url"),
        Input("pg-bin-dir", "PG_BIN_DIR"),
        Input("upload", "BACKUP_UPLOAD", "list", choices=UPLOAD_TARGETS),
        Input("keep-local", "KEEP_LOCAL", "bool"),
        Input("artifact-name", "ARTIFACT_NAME"),
        Input("artifact-retention-days", "ARTIFACT_RETENTION_DAYS", "int", minimum=1),
        Input("s3-url", "S3_URL"),
        Input("s3-endpoint-url", "S3_ENDPOINT_URL"),
        Input("s3-region", "S3_REGION"),
        Input("s3-sse", "S3_SSE"),
        Input("s3-sse-kms-key-id", "S3_SSE_KMS_KEY_ID"),
        Input("s3-storage-class", "S3_STORAGE_CLASS"),
        Input("aws-role-arn", "AWS_ROLE_ARN"),
        Input("aws-access-key-id", "AWS_ACCESS_KEY_ID", "secret"),
        Input("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", "secret"),
        Input("aws-session-token", "AWS_SESSION_TOKEN", "secret"),
        Input("retention-days", "RETENTION_DAYS", "int", minimum=1),
        Input("keep-daily", "KEEP_DAILY", "int"),
        Input("keep-weekly", "KEEP_WEEKLY", "int"),
        Input("keep-monthly", "KEEP_MONTHLY", "int"),
        Input("signing-key", "BACKUP_SIGNING_KEY", "secret"),
        Input("file", kind="text"),
        Input("dry-run", kind="bool"),
        Input("confirm", kind="bool"),
        Input("allow-unlisted", kind="bool"),
        Input("terminate-sessions", kind="bool"),
    )
}
# What an empty input means for the inputs the Action reads itself (the others fall back to their environment
# variable, then to chrono-ci's own default, so that a workflow's `env: DATABASE_URL: ...` keeps working).
ACTION_DEFAULTS = {
    "command": "backup",
    "databases": "all",
    "dry-run": "false",
    "confirm": "false",
    "allow-unlisted": "false",
    "terminate-sessions": "false",
}
# The runner accepts these for every container action (ActionRunner.cs); they are not ours to reject.
RUNNER_INPUTS = frozenset({"args", "entrypoint"})
# Secrets that may arrive through the workflow's `env:` rather than inputs: masked just the same.
SECRET_ENV_URLS = ("DATABASE_URL", "SUPABASE_DB_URL", "SCRATCH_DATABASE_URL", "RESTORE_TARGET_URL")
SECRET_ENV = (
    "PGPASSWORD",
    "BACKUP_SIGNING_KEY",
    "BACKUP_ENCRYPTION_PASSPHRASE",
    "BACKUP_ENCRYPTION_IDENTITY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)
TRUE_WORDS = ("true", "True", "TRUE")
FALSE_WORDS = ("false", "False", "FALSE")


@dataclass
class Inputs:
    values: dict[str, str]
    unknown: list[str]
    raw_secrets: list[str]

    def get(self, name: str) -> str:
        assert name in INPUTS, name
        return self.values.get(name, "")


def env_names(name: str) -> tuple[str, str]:
    """The two spellings of an input's variable: the runner's (`INPUT_BACKUP-DIR`) and the shell-friendly one."""
    upper = name.upper()
    return f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}"


def read_inputs(environ: Mapping[str, str]) -> Inputs:
    values: dict[str, str] = {}
    raw_secrets: list[str] = []
    for name, spec in INPUTS.items():
        spellings = [environ.get(key, "") for key in dict.fromkeys(env_names(name))]
        if spec.secret:
            raw_secrets += [value for value in spellings if value.strip()]
        values[name] = next((value.strip() for value in spellings if value.strip()), "")
    unknown = []
    for key in environ:
        if not key.startswith("INPUT_"):
            continue
        name = key[len("INPUT_") :].lower().replace("_", "-").replace(" ", "-")
        if name not in INPUTS and name not in RUNNER_INPUTS:
            unknown.append(key[len("INPUT_") :].lower())
            if environ[key].strip():
                # An unknown input may be a misspelt secret (`databse-url`): mask it before saying anything.
                raw_secrets.append(environ[key])
    return Inputs(values, sorted(unknown), raw_secrets)


def secrets_to_mask(inputs: Inputs, environ: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    for raw in inputs.raw_secrets:
        found += url_secrets(raw) if "://" in raw else [raw]
    for name in SECRET_ENV_URLS:
        found += url_secrets(environ.get(name, ""))
    for name in SECRET_ENV:
        if environ.get(name, "").strip():
            found.append(environ[name])
    return found


def parse_bool(raw: str, name: str) -> bool:
    """The toolkit's getBooleanInput: YAML 1.2 core-schema booleans only, anything else is an error."""
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise ConfigError(
        f"Input {name}: {raw!r} is not a boolean.",
        hint=f"Use true or false (YAML 1.2: {' | '.join(TRUE_WORDS + FALSE_WORDS)}).",
    )


def check_input(spec: Input, raw: str) -> str:
    """The value chrono-ci's environment gets for this input, or a ConfigError naming the input."""
    if spec.kind == "bool":
        return "true" if parse_bool(raw, spec.name) else "false"
    if spec.kind == "int":
        text = raw.lstrip("+")
        if not text.isdigit() or int(text) < spec.minimum:
            raise ConfigError(
                f"Input {spec.name}: {raw!r} is not a whole number of {spec.minimum} or more.",
                hint=f"Set {spec.name} to a number such as {max(spec.minimum, 7)}, or leave it out.",
            )
        return str(int(text))
    if spec.kind == "choice":
        word = raw.lower()
        if word not in spec.choices:
            raise ConfigError(
                f"Input {spec.name}: {raw!r} is not one of {', '.join(spec.choices)}.",
                hint=f"Set {spec.name} to one of those{did_you_mean(word, spec.choices)}.",
            )
        return word
    if spec.kind == "list":
        words = [word.lower() for word in raw.replace(",", " ").split()]
        bad = [word for word in words if word not in spec.choices]
        if bad:
            raise ConfigError(
                f"Input {spec.name}: {', '.join(repr(w) for w in bad)} is not one of {', '.join(spec.choices)}.",
                hint=f"Give one or more of {', '.join(spec.choices)}, separated by commas"
                f"{did_you_mean(bad[0], spec.choices)}.",
            )
        if "none" in words and len(set(words)) > 1:
            raise ConfigError(
                f"Input {spec.name}: 'none' cannot be combined with other targets ({raw!r}).",
                hint=f"Set {spec.name} to none, or to the targets you want (for example artifact,s3).",
            )
        return ",".join(dict.fromkeys(words))
    return raw


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
