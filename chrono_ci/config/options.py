"""The option table: every setting of chrono-ci declared once.

For each: its environment variable, its command-line option (if any), its Action input (if any), the grammar of
its value (chrono_ci/config/parsers.py), its default, its range or choices, whether it is a secret, and one line
of help. Everything else derives from this table: Settings (chrono_ci/config/settings.py), the commands' options
and their --help (chrono_ci/cli/options.py), the Action's inputs and the secrets it masks (chrono_ci/action/inputs.py),
the settings table of docs/settings.md and the input tables of the README and docs/action.md (tests/test_options.py
checks them, and action.yml, against it).

Some settings are read where they are used rather than by Settings (the S3_* and AWS_* variables by the S3
store, HEARTBEAT_* by the heartbeat, ARTIFACT_RETENTION_DAYS by the artifact store), because those modules also
work on an environment of their own; they are declared here all the same, so the docs, the Action and the masks
know them.

Why one long module: it is a table, one entry per setting, and the point of it is that there is one; split by
package, the declarations would drift apart again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chrono_ci.config.parsers import (
    SETTING_BOOLEANS,
    Booleans,
    parse_bool,
    parse_choice,
    parse_list,
    parse_s3_url_setting,
    parse_seconds,
    parse_whole,
)
from chrono_ci.errors import ConfigError

Grammar = Literal["text", "path", "url", "secret", "bool", "whole", "seconds", "choice", "list", "s3url"]

# What the command line shows for a value of each grammar.
METAVARS: dict[Grammar, str] = {
    "text": "TEXT",
    "path": "PATH",
    "url": "URL",
    "secret": "SECRET",
    "bool": "BOOL",
    "whole": "N",
    "seconds": "SECONDS",
    "choice": "",
    "list": "",
    "s3url": "s3://BUCKET/PREFIX",
}


@dataclass(frozen=True)
class Setting:
    name: str  # the Python name: Settings' attribute, the command's parameter
    env: str
    help: str  # one line, for --help, the Action input's description and the README
    grammar: Grammar = "text"
    default: str | None = None  # a value in the setting's grammar; None: no default, or one computed (below)
    default_text: str | None = None  # how a computed default is described ("zstd 1, gzip 6")
    choices: tuple[str, ...] = ()
    minimum: int = 0  # for whole numbers
    secret: bool = False  # masked in every log; never accepted on the command line
    flag: str | None = None  # the command-line option; None: environment (or Action input) only
    flag_help: str = ""  # what only the command line needs saying
    input: str | None = None  # the Action input; None: not an input
    input_default: str | None = None  # the default as the Action applies it, when it differs
    input_help: str = ""  # what only the Action needs saying

    @property
    def shown_default(self) -> str | None:
        return self.default_text if self.default_text is not None else self.default

    @property
    def metavar(self) -> str:
        if self.grammar == "choice":
            return "|".join(self.choices)
        if self.grammar == "list":
            return "none|" + "|".join(self.choices) + "|" + ",".join(self.choices)
        return METAVARS[self.grammar]

    def parse(self, raw: str, label: str, booleans: Booleans = SETTING_BOOLEANS) -> Any:
        """The value of `raw` in this setting's grammar; a ConfigError naming `label` otherwise."""
        if self.grammar == "bool":
            return parse_bool(raw, label, booleans)
        if self.grammar == "whole":
            return parse_whole(raw, label, self.minimum)
        if self.grammar == "seconds":
            return parse_seconds(raw, label)
        if self.grammar == "choice":
            return parse_choice(raw, label, self.choices)
        if self.grammar == "list":
            return parse_list(raw, label, self.choices)
        if self.grammar == "s3url":
            return parse_s3_url_setting(raw, label)
        return raw.strip() if self.grammar in ("text", "path") else raw

    def input_description(self) -> str:
        """The input's description in action.yml: the help, the variable it sets, its default."""
        default = self.input_default or self.shown_default
        parts = [f"{self.help} [{self.env}]."]
        if default is not None:
            parts.append(f"Default: {default}.")
        if self.input_help:
            parts.append(self.input_help)
        return " ".join(parts)


Compression = Literal["zstd", "gzip", "none"]
VerifyLevel = Literal["check", "restore"]
COMPRESSIONS: tuple[Compression, ...] = ("zstd", "gzip", "none")
VERIFY_LEVELS: tuple[VerifyLevel, ...] = ("check", "restore")
UPLOAD_TARGETS = ("artifact", "s3")

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "DATABASE_URL",
        "The PostgreSQL database to back up: postgresql://USER:PASSWORD@HOST/DB",
        "url",
        secret=True,
        flag="--database-url",
        flag_help="Without a password on the command line: put it in the variable, PGPASSWORD or ~/.pgpass.",
        input="database-url",
        input_help="Pass it from a secret; it is masked in the log.",
    ),
    Setting(
        "supabase_db_url",
        "SUPABASE_DB_URL",
        "The Supabase database (its session pooler or direct connection URL)",
        "url",
        secret=True,
        flag="--supabase-db-url",
        flag_help="Without a password on the command line: put it in the variable, PGPASSWORD or ~/.pgpass.",
        input="supabase-db-url",
        input_help="Pass it from a secret; it is masked in the log.",
    ),
    Setting(
        "backup_dir",
        "BACKUP_DIR",
        "The backup folder: archives and backup_metadata.json, created with mode 0700",
        "path",
        default="./backups",
        flag="--backup-dir",
        input="backup-dir",
        input_default="backups in the workspace",
        input_help="Relative to the workspace, or absolute. Add it to .gitignore: the Action warns when it is "
        "inside the git work tree and not ignored.",
    ),
    Setting(
        "max_backups",
        "MAX_BACKUPS",
        "Keep the newest N archives of each database",
        "whole",
        default="30",
        minimum=1,
        flag="--max-backups",
        input="max-backups",
        input_help="Retention rules combine: an archive is kept when any rule keeps it.",
    ),
    Setting(
        "compress_backups",
        "COMPRESS_BACKUPS",
        "false is the same as BACKUP_COMPRESSION=none",
        "bool",
        default="true",
        flag="--compress",
    ),
    Setting(
        "compression",
        "BACKUP_COMPRESSION",
        "How archives are compressed: zstd, gzip (the guide's .sql.gz) or none",
        "choice",
        default="zstd",
        choices=COMPRESSIONS,
        flag="--compression",
        input="compression",
    ),
    Setting(
        "compression_level",
        "BACKUP_COMPRESSION_LEVEL",
        "The compression level: zstd 1-19, gzip 1-9",
        "whole",
        default_text="zstd 1, gzip 6",
        minimum=1,
        flag="--compression-level",
        input="compression-level",
    ),
    Setting(
        "verify",
        "BACKUP_VERIFY",
        "check: the integrity check after every backup (checksum, full decompression, trailer, row counts); "
        "restore: also restore it into a scratch database and compare every table",
        "choice",
        default="check",
        choices=VERIFY_LEVELS,
        flag="--verify",
        input="verify-level",
        input_help="Used after each backup and by command: verify.",
    ),
    Setting(
        "scratch_url",
        "SCRATCH_DATABASE_URL",
        "A server where restore-verification may create a throwaway database",
        "url",
        default_text="an embedded PostgreSQL 18",
        secret=True,
        flag="--scratch-url",
        flag_help="Without a password on the command line.",
        input="scratch-database-url",
        input_default="an embedded PostgreSQL inside the container",
    ),
    Setting(
        "target_url",
        "RESTORE_TARGET_URL",
        "The database a restore replaces",
        "url",
        default_text="DATABASE_URL or SUPABASE_DB_URL, by the archive's kind",
        secret=True,
        flag="--target-url",
        flag_help="Without a password on the command line.",
        input="restore-target-url",
        input_default="database-url or supabase-db-url, by the archive's kind",
        input_help="Pass it from a secret; it is masked in the log.",
    ),
    Setting(
        "lock_timeout",
        "RESTORE_LOCK_TIMEOUT",
        "Seconds a restore waits for a lock another session holds before giving up",
        "seconds",
        default="10",
        flag="--lock-timeout",
    ),
    Setting(
        "pg_bin_dir",
        "PG_BIN_DIR",
        "Use only the pg_dump in this folder",
        "path",
        default_text="the newest suitable one found",
        flag="--pg-bin-dir",
        input="pg-bin-dir",
    ),
    Setting(
        "upload",
        "BACKUP_UPLOAD",
        "Where to copy each new archive besides the backup folder: none, artifact, s3, or several separated by commas",
        "list",
        default_text="s3 when S3_URL is set, else none",
        choices=UPLOAD_TARGETS,
        flag="--upload",
        input="upload",
    ),
    Setting(
        "keep_local",
        "KEEP_LOCAL",
        "Keep the archive in the backup folder after a successful upload",
        "bool",
        default="true",
        flag="--keep-local",
        input="keep-local",
    ),
    Setting(
        "artifact_name",
        "ARTIFACT_NAME",
        "The workflow artifact's name for upload: artifact, and so the downloaded file's; the archive's extension "
        "is appended unless it ends with it, and with several databases in one run each gets -KIND before it",
        default_text="the archive's file name",
        flag="--artifact-name",
        input="artifact-name",
        input_help="Names are unique per run: set one per matrix job.",
    ),
    Setting(
        "artifact_retention_days",
        "ARTIFACT_RETENTION_DAYS",
        "Days GitHub keeps the artifact, at most GITHUB_RETENTION_DAYS",
        "whole",
        default_text="the repository's setting",
        minimum=1,
        input="artifact-retention-days",
    ),
    Setting(
        "s3_url",
        "S3_URL",
        "Where uploads to S3 go, and what --from s3 reads",
        "s3url",
        flag="--s3-url",
        input="s3-url",
    ),
    Setting(
        "s3_endpoint_url",
        "S3_ENDPOINT_URL",
        "The endpoint of an S3-compatible store (MinIO, R2, SeaweedFS, ...)",
        default_text="AWS",
        input="s3-endpoint-url",
    ),
    Setting(
        "s3_region",
        "S3_REGION",
        "The bucket's region",
        default_text="AWS_REGION",
        input="s3-region",
    ),
    Setting(
        "s3_sse",
        "S3_SSE",
        "Server-side encryption: AES256 or aws:kms",
        default_text="the bucket's setting",
        input="s3-sse",
    ),
    Setting(
        "s3_sse_kms_key_id",
        "S3_SSE_KMS_KEY_ID",
        "The KMS key id or ARN for S3_SSE=aws:kms",
        input="s3-sse-kms-key-id",
    ),
    Setting(
        "s3_storage_class",
        "S3_STORAGE_CLASS",
        "The storage class of uploaded archives, e.g. STANDARD_IA",
        default_text="STANDARD",
        input="s3-storage-class",
    ),
    Setting(
        "s3_retry_deadline",
        "S3_RETRY_DEADLINE",
        "Seconds each S3 request is retried through an outage (waits of 1 s doubling to 15 s) before the upload "
        "fails; 0: no retry",
        "whole",
        default="300",
        minimum=0,
        input="s3-retry-deadline",
    ),
    Setting(
        "s3_checksums",
        "S3_CHECKSUMS",
        "boto3's request checksums: when_required works with R2, B2, Google Cloud Storage and older MinIO; "
        "when_supported adds CRC32 checksums to uploads (AWS S3); each archive is proven by its sha256 either way",
        "choice",
        default="when_required",
        choices=("when_required", "when_supported"),
        input="s3-checksums",
    ),
    Setting(
        "aws_role_arn",
        "AWS_ROLE_ARN",
        "An IAM role to assume with GitHub OIDC, no stored keys (the job needs permissions: id-token: write)",
        input="aws-role-arn",
    ),
    Setting(
        "aws_role_session_name",
        "AWS_ROLE_SESSION_NAME",
        "The session name of the role assumed with GitHub OIDC (2-64 letters, digits and +=,.@_-)",
        default="GitHubActions",
    ),
    Setting(
        "aws_oidc_audience",
        "AWS_OIDC_AUDIENCE",
        "The audience of the GitHub OIDC token exchanged for the role's keys",
        default="sts.amazonaws.com",
    ),
    Setting(
        "aws_access_key_id",
        "AWS_ACCESS_KEY_ID",
        "A static AWS (or S3-compatible) access key id",
        "secret",
        secret=True,
        input="aws-access-key-id",
        input_help="From a secret; masked.",
    ),
    Setting(
        "aws_secret_access_key",
        "AWS_SECRET_ACCESS_KEY",
        "The static secret access key",
        "secret",
        secret=True,
        input="aws-secret-access-key",
        input_help="From a secret; masked.",
    ),
    Setting(
        "aws_session_token",
        "AWS_SESSION_TOKEN",
        "The session token of temporary credentials",
        "secret",
        secret=True,
        input="aws-session-token",
        input_help="Masked.",
    ),
    Setting(
        "retention_days",
        "RETENTION_DAYS",
        "Also keep every archive made in the last N days",
        "whole",
        default_text="off",
        minimum=1,
        flag="--retention-days",
        input="retention-days",
    ),
    Setting(
        "keep_daily",
        "KEEP_DAILY",
        "Also keep the newest archive of each of the last N days",
        "whole",
        default="0",
        flag="--keep-daily",
        input="keep-daily",
    ),
    Setting(
        "keep_weekly",
        "KEEP_WEEKLY",
        "Also keep the newest archive of each of the last N weeks",
        "whole",
        default="0",
        flag="--keep-weekly",
        input="keep-weekly",
    ),
    Setting(
        "keep_monthly",
        "KEEP_MONTHLY",
        "Also keep the newest archive of each of the last N months",
        "whole",
        default="0",
        flag="--keep-monthly",
        input="keep-monthly",
    ),
    Setting(
        "encryption_recipients",
        "BACKUP_ENCRYPTION_RECIPIENTS",
        "age (age1...) and SSH (ssh-ed25519, ssh-rsa) public keys separated by commas, or a file of them: "
        "encrypt every archive to them",
    ),
    Setting(
        "encryption_passphrase",
        "BACKUP_ENCRYPTION_PASSPHRASE",
        "No longer supported (chrono-ci encrypts to public keys only): set, it stops the run; see 'Moving from a "
        "passphrase'",
        "secret",
        secret=True,
    ),
    Setting(
        "encryption_identity",
        "BACKUP_ENCRYPTION_IDENTITY",
        "An age identity (AGE-SECRET-KEY-1...) or SSH private key, or the path of a file holding one, to decrypt",
        "secret",
        secret=True,
    ),
    Setting(
        "signing_key",
        "BACKUP_SIGNING_KEY",
        "A secret of at least 32 characters (openssl rand -hex 32) that signs every record chrono-ci writes; "
        "restores, retention and status then trust only records it signed",
        "secret",
        secret=True,
        input="signing-key",
        input_help="Pass it from a secret; masked.",
    ),
    Setting(
        "heartbeat_url",
        "HEARTBEAT_URL",
        "After a backup run, POST a short JSON summary here (after a failed one, to HEARTBEAT_URL/fail)",
        "secret",
        secret=True,
    ),
    Setting(
        "heartbeat_fail_url",
        "HEARTBEAT_FAIL_URL",
        "After a failed backup run, POST here instead",
        "secret",
        default_text="HEARTBEAT_URL + /fail",
        secret=True,
    ),
)

SETTING: Mapping[str, Setting] = {setting.name: setting for setting in SETTINGS}
BY_ENV: Mapping[str, Setting] = {setting.env: setting for setting in SETTINGS}


def check_s3_upload(uploads: tuple[str, ...], s3_url: str | None, upload_label: str, url_label: str) -> None:
    """The one rule between two settings that the Action also checks before anything runs: S3 needs a bucket."""
    if "s3" in uploads and not s3_url:
        raise ConfigError(
            f"{upload_label} includes s3 but no bucket is set.",
            hint=f"Set {url_label} to s3://BUCKET/PREFIX (and S3_ENDPOINT_URL for an S3-compatible server).",
        )


def s3_url_for_reading(s3_url: str | None) -> str:
    """S3_URL, for the commands that read from S3 (--from s3): the one message when it is not set."""
    if not s3_url:
        raise ConfigError(
            "S3_URL is not set: --from s3 needs the bucket and prefix to read.",
            hint="Set S3_URL=s3://BUCKET/PREFIX (or --s3-url) and the S3_* and AWS_* variables the backup uses.",
        )
    return s3_url


def env_name(name: str) -> str:
    """The environment variable of the setting `name` ("max_backups" -> "MAX_BACKUPS")."""
    return SETTING[name].env


def secret_variables() -> tuple[str, ...]:
    """The variables whose values are masked wherever they appear."""
    return tuple(setting.env for setting in SETTINGS if setting.secret)
