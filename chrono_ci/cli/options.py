"""The command-line options the commands share, each a string parsed later by chrono_ci.config.settings, so that
an option and its environment variable are validated by the same code and produce the same error."""

from __future__ import annotations

from typing import Annotated

import typer

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="PostgreSQL URL without a password [env: DATABASE_URL].")
]
SupabaseUrl = Annotated[
    str | None,
    typer.Option("--supabase-db-url", help="Supabase URL without a password [env: SUPABASE_DB_URL]."),
]
BackupDir = Annotated[str | None, typer.Option("--backup-dir", help="Backup folder [env: BACKUP_DIR; ./backups].")]
MaxBackups = Annotated[
    str | None, typer.Option("--max-backups", help="Archives kept per database [env: MAX_BACKUPS; 30].")
]
Compress = Annotated[
    str | None, typer.Option("--compress", help="true|false [env: COMPRESS_BACKUPS; true].", metavar="BOOL")
]
Compression = Annotated[
    str | None, typer.Option("--compression", help="zstd|gzip|none [env: BACKUP_COMPRESSION; zstd].")
]
Level = Annotated[
    str | None,
    typer.Option("--compression-level", help="zstd 1-19, gzip 1-9 [env: BACKUP_COMPRESSION_LEVEL; 1 / 6]."),
]
Verify = Annotated[
    str | None,
    typer.Option("--verify", help="check|restore: check after each backup [env: BACKUP_VERIFY; check]."),
]
Upload = Annotated[
    str | None,
    typer.Option("--upload", help="none|s3|artifact|s3,artifact [env: BACKUP_UPLOAD; s3 when S3_URL is set]."),
]
KeepLocal = Annotated[
    str | None,
    typer.Option(
        "--keep-local", help="true|false: keep uploaded archives in BACKUP_DIR [env: KEEP_LOCAL; true].", metavar="BOOL"
    ),
]
ArtifactName = Annotated[
    str | None, typer.Option("--artifact-name", help="[env: ARTIFACT_NAME; unique per run and database].")
]
RetentionDays = Annotated[
    str | None, typer.Option("--retention-days", help="Also keep archives younger than N days [env: RETENTION_DAYS].")
]
KeepDaily = Annotated[
    str | None, typer.Option("--keep-daily", help="GFS: newest of the last N days [env: KEEP_DAILY].")
]
KeepWeekly = Annotated[
    str | None, typer.Option("--keep-weekly", help="GFS: newest of the last N weeks [env: KEEP_WEEKLY].")
]
KeepMonthly = Annotated[
    str | None, typer.Option("--keep-monthly", help="GFS: newest of the last N months [env: KEEP_MONTHLY].")
]
From = Annotated[str, typer.Option("--from", help="local (BACKUP_DIR) or s3 (S3_URL). A FILE of s3://... implies s3.")]
PgBinDir = Annotated[
    str | None, typer.Option("--pg-bin-dir", help="Use only the pg_dump in this folder [env: PG_BIN_DIR].")
]
ScratchUrl = Annotated[
    str | None,
    typer.Option(
        "--scratch-url",
        help="Server where a temporary database may be created for --restore/--verify restore, without a password "
        "[env: SCRATCH_DATABASE_URL; a throwaway embedded PostgreSQL 18].",
    ),
]
FileArg = Annotated[str, typer.Argument(help="An archive name in BACKUP_DIR, or a path to one.", metavar="FILE")]
AllowUnlisted = Annotated[
    bool,
    typer.Option(
        "--allow-unlisted",
        help="Restore FILE even though no trusted record vouches for it (none in backup_metadata.json or the "
        "S3 object's metadata, or, with BACKUP_SIGNING_KEY, none signed). Only for an archive you know is yours.",
    ),
]
S3Url = Annotated[str | None, typer.Option("--s3-url", help="s3://bucket/prefix [env: S3_URL].")]
