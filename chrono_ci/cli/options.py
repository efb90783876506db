"""The command-line options, made from the option table (chrono_ci/config/options.py): each setting's option with
its variable (`envvar`) and its default shown in --help, in plain text.

Every setting arrives as a string and is parsed later by chrono_ci.config.settings, so that an option and its
variable are read by the same grammar and fail with the same error. Click reads the variable too (that is what
shows it in --help); chrono_ci.cli.command.cli_values keeps only what was typed on the command line, and Settings
reads the environment itself.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chrono_ci.config.options import SETTING


def setting_option(name: str) -> Any:
    """The typer.Option of the setting `name`, as the table declares it."""
    setting = SETTING[name]
    assert setting.flag is not None, f"{name} has no command-line option"
    return typer.Option(
        setting.flag,
        envvar=setting.env,
        show_envvar=False,
        show_default=False,
        help=setting_help(name),
        metavar=setting.metavar,
    )


def setting_help(name: str) -> str:
    """The option's help: the table's line, then its variable and its default as click writes them (click's own
    would put a described default in parentheses, and only the variable of options it reads)."""
    setting = SETTING[name]
    text = setting.help.rstrip(".") + "."
    if setting.flag_help:
        text += " " + setting.flag_help
    extra = f"env var: {setting.env}"
    if setting.shown_default is not None:
        extra += f"; default: {setting.shown_default}"
    return f"{text}  [{extra}]"


DatabaseUrl = Annotated[str | None, setting_option("database_url")]
SupabaseUrl = Annotated[str | None, setting_option("supabase_db_url")]
BackupDir = Annotated[str | None, setting_option("backup_dir")]
MaxBackups = Annotated[str | None, setting_option("max_backups")]
Compress = Annotated[str | None, setting_option("compress_backups")]
Compression = Annotated[str | None, setting_option("compression")]
Level = Annotated[str | None, setting_option("compression_level")]
Verify = Annotated[str | None, setting_option("verify")]
Upload = Annotated[str | None, setting_option("upload")]
KeepLocal = Annotated[str | None, setting_option("keep_local")]
ArtifactName = Annotated[str | None, setting_option("artifact_name")]
RetentionDays = Annotated[str | None, setting_option("retention_days")]
KeepDaily = Annotated[str | None, setting_option("keep_daily")]
KeepWeekly = Annotated[str | None, setting_option("keep_weekly")]
KeepMonthly = Annotated[str | None, setting_option("keep_monthly")]
PgBinDir = Annotated[str | None, setting_option("pg_bin_dir")]
ScratchUrl = Annotated[str | None, setting_option("scratch_url")]
TargetUrl = Annotated[str | None, setting_option("target_url")]
LockTimeout = Annotated[str | None, setting_option("lock_timeout")]
S3Url = Annotated[str | None, setting_option("s3_url")]

# The command's own options: not settings, no variable.
JsonOutput = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (the log goes to stderr); also before the command."),
]
From = Annotated[
    str,
    typer.Option(
        "--from",
        metavar="local|s3",
        help="local: BACKUP_DIR and its backup_metadata.json; s3: the objects under S3_URL. A FILE of s3://... "
        "implies s3.",
    ),
]
FileArg = Annotated[
    str,
    typer.Argument(help="An archive name in BACKUP_DIR, a path to one, or s3://BUCKET/PREFIX/NAME.", metavar="FILE"),
]
AllowUnlisted = Annotated[
    bool,
    typer.Option(
        "--allow-unlisted",
        help="Restore FILE even though no trusted record vouches for it (none in backup_metadata.json or the "
        "S3 object's metadata, or, with BACKUP_SIGNING_KEY, none signed). Only for an archive you know is yours.",
    ),
]
