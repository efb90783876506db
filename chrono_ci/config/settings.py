"""Settings, resolved once: command-line option > environment > default, each validated with an error that
names the setting and the bad value.

Every setting is declared once, in the option table (chrono_ci/config/options.py): its variable, its option, its
grammar and default, whether it is secret. This module turns the table's raw values into the Settings in force
and checks the rules between settings (S3 needs S3_URL, KEEP_LOCAL=false needs an upload, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chrono_ci.archive.signing import SIGNING_KEY_ENV, SigningKey, signing_key_from
from chrono_ci.config.options import (
    COMPRESSIONS,
    SETTING,
    SETTINGS,
    VERIFY_LEVELS,
    Compression,
    Setting,
    VerifyLevel,
    check_s3_upload,
)
from chrono_ci.errors import ConfigError
from chrono_ci.retention.policy import RetentionPolicy
from chrono_ci.source.target import DatabaseTarget, parse_database_url

__all__ = ["COMPRESSIONS", "OPTIONS", "VERIFY_LEVELS", "Compression", "Encryption", "Settings", "VerifyLevel"]

# The table, by name: where each setting comes from and whether its value is a secret.
OPTIONS: Mapping[str, Setting] = SETTING
# Secret variables Settings holds no parsed form of (the S3 store and the heartbeat read them): masked as written.
_RAW_SECRETS = tuple(
    setting.env
    for setting in SETTINGS
    if setting.secret
    and setting.name
    not in (
        "database_url",
        "supabase_db_url",
        "scratch_url",
        "target_url",
        "encryption_passphrase",
        "encryption_identity",
        "signing_key",
    )
)

DEFAULT_LEVELS: dict[Compression, int] = {"zstd": 1, "gzip": 6, "none": 0}


@dataclass(frozen=True)
class Settings:
    database: DatabaseTarget | None
    supabase: DatabaseTarget | None
    backup_dir: Path
    max_backups: int
    compression: Compression
    compression_level: int
    verify: VerifyLevel
    scratch: DatabaseTarget | None
    restore_target: DatabaseTarget | None
    pg_bin_dir: Path | None
    uploads: tuple[str, ...] = ()  # remote targets, in order: "s3", "artifact"
    s3_url: str | None = None
    keep_local: bool = True
    artifact_name: str | None = None
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    lock_timeout: float = 10.0  # seconds a restore waits for another session's lock
    encryption: Encryption = field(default_factory=lambda: Encryption())
    # BACKUP_SIGNING_KEY: records are signed, and only signed records are trusted (restore, retention, status).
    signing_key: SigningKey | None = None
    # The values of the secret variables read elsewhere (AWS keys, heartbeat URLs), so that they are masked too.
    raw_secrets: tuple[str, ...] = field(default=(), repr=False)
    # Where each value came from, for the "settings in force" report: {"max_backups": "MAX_BACKUPS"}.
    sources: Mapping[str, str] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        """Every secret value in force, for masking."""
        found: list[str] = []
        for target in (self.database, self.supabase, self.scratch, self.restore_target):
            if target is not None:
                found.extend(target.secrets())
        found.extend(self.encryption.secrets())
        if self.signing_key is not None:
            found.extend(self.signing_key.secrets())
        found.extend(self.raw_secrets)
        return found


def _pick(name: str, cli: Mapping[str, str | None], environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The raw value and the label to blame in an error ('--max-backups' or 'MAX_BACKUPS')."""
    option = OPTIONS[name]
    if cli.get(name) is not None:
        return cli[name], (option.flag or option.env).split("/")[0]
    value = environ.get(option.env)
    if value is not None and value.strip() != "":
        return value, option.env
    return None, option.env


def _url(name: str, cli: Mapping[str, str | None], environ: Mapping[str, str]) -> DatabaseTarget | None:
    raw, label = _pick(name, cli, environ)
    if raw is None:
        return None
    target = parse_database_url(raw, label)
    if label.startswith("--") and target.password:
        # argv is readable by every user of the machine (ps, /proc): passwords never travel there.
        raise ConfigError(
            f"{label} carries a password; passwords are not accepted on the command line.",
            hint=f"Put the URL in the {OPTIONS[name].env} environment variable instead, or leave the password "
            "out of the URL and set PGPASSWORD or use a ~/.pgpass file.",
        )
    return target


def resolve_settings(cli: Mapping[str, str | None] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the Settings in force; raises ConfigError before anything runs."""
    cli = cli or {}
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}

    def take(name: str, parse: Callable[[str, str], Any] | None = None, default: Any = None) -> Any:
        """The setting's value in its grammar (or by `parse`); its table default, else `default`, when unset."""
        setting = OPTIONS[name]
        parse = parse or setting.parse
        raw, label = _pick(name, cli, env)
        if raw is None:
            sources[name] = "default"
            return parse(setting.default, setting.env) if setting.default is not None else default
        sources[name] = label
        return parse(raw, label)

    def path(raw: str, _label: str) -> Path:
        return Path(raw.strip()).expanduser()

    backup_dir = take("backup_dir", path)
    max_backups = take("max_backups")
    compress = take("compress_backups")
    compression: Compression = take("compression")
    if not compress:
        if sources["compression"] != "default" and compression != "none":
            raise ConfigError(
                f"COMPRESS_BACKUPS=false contradicts {sources['compression']}={compression}.",
                hint="Set only one of them: BACKUP_COMPRESSION=none is the same as COMPRESS_BACKUPS=false.",
            )
        compression = "none"
    level = take("compression_level", lambda raw, label: _parse_level(raw, label, compression))
    verify: VerifyLevel = take("verify")
    pg_bin_dir = take("pg_bin_dir", path)
    s3_url = take("s3_url")
    uploads: tuple[str, ...] = take("upload", default=("s3",) if s3_url else ())
    check_s3_upload(uploads, s3_url, sources["upload"], "S3_URL")
    keep_local = take("keep_local")
    if not keep_local and not uploads:
        raise ConfigError(
            "KEEP_LOCAL=false with no upload target would keep the backup nowhere.",
            hint="Set BACKUP_UPLOAD=s3 (with S3_URL) or artifact, or keep KEEP_LOCAL=true.",
        )
    artifact_name = take("artifact_name")
    retention = RetentionPolicy(
        max_backups=max_backups,
        retention_days=take("retention_days"),
        keep_daily=take("keep_daily"),
        keep_weekly=take("keep_weekly"),
        keep_monthly=take("keep_monthly"),
    )
    lock_timeout = take("lock_timeout")
    encryption = _encryption(cli, env)
    if verify == "restore" and encryption.recipients and not encryption.can_decrypt:
        raise ConfigError(
            "BACKUP_VERIFY=restore needs to decrypt the new archive, and only BACKUP_ENCRYPTION_RECIPIENTS "
            "(public keys) is set.",
            hint="Also give BACKUP_ENCRYPTION_IDENTITY (the matching secret key, from a CI secret), or use "
            "BACKUP_VERIFY=check.",
        )
    return Settings(
        encryption=encryption,
        signing_key=_signing_key(cli, env),
        database=_url("database_url", cli, env),
        supabase=_url("supabase_db_url", cli, env),
        backup_dir=backup_dir,
        max_backups=max_backups,
        compression=compression,
        compression_level=DEFAULT_LEVELS[compression] if level is None else level,
        verify=verify,
        scratch=_url("scratch_url", cli, env),
        restore_target=_url("target_url", cli, env),
        pg_bin_dir=pg_bin_dir,
        uploads=uploads,
        s3_url=s3_url,
        keep_local=keep_local,
        artifact_name=artifact_name,
        retention=retention,
        lock_timeout=lock_timeout,
        raw_secrets=tuple(env[name] for name in _RAW_SECRETS if env.get(name, "").strip()),
        sources=sources,
    )


@dataclass(frozen=True)
class Encryption:
    """age encryption in force: recipients (public keys) to encrypt, identities (secret keys) to decrypt.

    The keys are pyrage objects (chrono_ci.crypto.keys); pyrage itself is loaded only when one is set."""

    recipients: tuple[Any, ...] = ()
    identities: tuple[Any, ...] = field(default=(), repr=False)
    identity_text: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.recipients)

    @property
    def can_decrypt(self) -> bool:
        return bool(self.identities)

    @property
    def method(self) -> str | None:
        """What the record says: age-x25519, age-ssh, or age-ssh+x25519 for a mix."""
        if not self.recipients:
            return None
        from chrono_ci.crypto.keys import recipient_kind

        return "age-" + "+".join(sorted({recipient_kind(recipient) for recipient in self.recipients}))

    def encryptor(self) -> Any:
        from chrono_ci.crypto.streams import EncryptingStage

        return EncryptingStage(self.recipients)

    def decryptor(self) -> Any:
        """What decrypts one archive as it is read; a missing key is a clear error before anything is read."""
        from chrono_ci.crypto.streams import Decryption

        if not self.can_decrypt:
            raise ConfigError(
                "The archive is encrypted (.age) and no key to decrypt it was given.",
                hint="Set BACKUP_ENCRYPTION_IDENTITY (the AGE-SECRET-KEY-1... key, an SSH private key, or a file "
                "holding one). Nothing was touched.",
            )
        return Decryption(self.identities)

    def decrypt_for(self, encrypted: bool) -> Callable[[], Any] | None:
        """What readers of an archive take: None for a plain archive, else a maker of fresh Decryptors.

        Asking for it checks the key is there, so a missing key stops a command before anything is touched.
        """
        if not encrypted:
            return None
        self.decryptor()
        return self.decryptor

    def secrets(self) -> list[str]:
        if not self.identity_text:
            return []
        from chrono_ci.crypto.keys import identity_secrets

        return identity_secrets(self.identity_text)


def _encryption(cli: Mapping[str, str | None], env: Mapping[str, str]) -> Encryption:
    passphrase_variable = OPTIONS["encryption_passphrase"].env
    if cli.get("encryption_passphrase") is not None or passphrase_variable in env:
        # Set, even empty: someone expects encryption that this version cannot give; never back up in the clear.
        raise ConfigError(
            f"{passphrase_variable} is no longer supported: chrono-ci encrypts to public keys only.",
            hint="Make a key pair with `age-keygen -o key.txt`; set BACKUP_ENCRYPTION_RECIPIENTS to its age1... "
            "public key and keep the file's AGE-SECRET-KEY-1... line as the CI secret BACKUP_ENCRYPTION_IDENTITY. "
            "Archives made with the passphrase open with `age -d`: see 'Moving from a passphrase' in the docs' "
            "Encryption page.",
        )
    for name in ("encryption_recipients", "encryption_identity"):
        variable = OPTIONS[name].env
        # A CI secret that does not exist expands to "": that is a request for encryption that cannot be
        # honoured, never a reason to write the backup in the clear.
        if cli.get(name) is None and variable in env and not env[variable].strip():
            raise ConfigError(
                f"{variable} is set but empty.",
                hint=f"A missing or misspelled CI secret expands to an empty value. Give {variable} its value, or "
                "remove the variable to back up without encryption.",
            )
    recipients_text, _ = _pick("encryption_recipients", cli, env)
    identity_text, identity_label = _pick("encryption_identity", cli, env)
    if identity_text is not None and identity_label.startswith("--"):
        raise ConfigError(
            f"{identity_label} is a secret; secrets are not accepted on the command line.",
            hint=f"Set {OPTIONS['encryption_identity'].env} in the environment instead.",
        )
    if recipients_text is None and identity_text is None:
        # No encryption asked for: pyrage (the `age` extra) is not even loaded.
        return Encryption()
    from chrono_ci.crypto import keys

    recipients = tuple(keys.load_recipients(recipients_text)) if recipients_text is not None else ()
    if identity_text is None:
        return Encryption(recipients)
    identities, key_text = keys.load_identities(identity_text)
    return Encryption(recipients, tuple(identities), key_text)


def _signing_key(cli: Mapping[str, str | None], env: Mapping[str, str]) -> SigningKey | None:
    # Set but empty (a CI secret that does not exist) is a request for signing that cannot be honoured.
    if cli.get("signing_key") is None and SIGNING_KEY_ENV in env and not env[SIGNING_KEY_ENV].strip():
        return signing_key_from("")
    raw, label = _pick("signing_key", cli, env)
    return signing_key_from(raw, label)


def _parse_level(raw: str, label: str, compression: Compression) -> int:
    ranges = {"zstd": (1, 19), "gzip": (1, 9)}
    if compression == "none":
        raise ConfigError(f"{label}={raw!r} is set but compression is off.", hint=f"Unset {label}.")
    low, high = ranges[compression]
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(
            f"{label}={raw!r} is not a valid {compression} level.",
            hint=f"Use a whole number from {low} to {high}.",
        )
    return value
