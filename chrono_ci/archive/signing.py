"""Signed records: with BACKUP_SIGNING_KEY set, every record chrono-ci writes (a backup_metadata.json entry, an S3
object's metadata) carries an HMAC-SHA256 of what it says about its archive.

Whoever can write the backup folder or the bucket can write an archive and a record beside it; the sha256 in the
record proves nothing, since the same hand wrote both. Only a key kept elsewhere (a CI secret) tells chrono-ci's
records from forgeries.

The signed message is `chrono-ci record v1` and a newline, then the record as JSON with exactly these keys,
sorted, no spaces, non-ASCII escaped (Python's json.dumps(..., sort_keys=True, separators=(",", ":"))):

    {"created_at":"2026-11-25T02:00:00.412345Z","file":"postgres_backup_2026-11-25_02-00-00.sql.zst",
     "kind":"postgres","sha256":"<64 hex>","size":26367,"source":"db.example.com:5432/app"}

`size` is a JSON number, every other value a string exactly as recorded. The signature is written as
`hmac-sha256:` and 64 lowercase hex digits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from chrono_ci.errors import ConfigError

SIGNING_KEY_ENV = "BACKUP_SIGNING_KEY"
SIGNATURE_PREFIX = "hmac-sha256:"
DOMAIN = b"chrono-ci record v1\n"
# An HMAC key an attacker could guess offline, from any signed record they can read, protects nothing.
MIN_KEY_CHARACTERS = 32


@dataclass(frozen=True)
class Record:
    """What a record says its archive is: the fields the signature covers."""

    file: str
    size: int
    sha256: str
    source: str
    kind: str
    created_at: str

    def message(self) -> bytes:
        fields = {
            "created_at": self.created_at,
            "file": self.file,
            "kind": self.kind,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
        }
        return DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class SigningKey:
    """The secret behind every signature; never shown (repr included)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._key = secret.encode("utf-8")

    def __repr__(self) -> str:
        return "SigningKey(***)"

    def sign(self, record: Record) -> str:
        return SIGNATURE_PREFIX + hmac.new(self._key, record.message(), hashlib.sha256).hexdigest()

    def verify(self, record: Record, signature: object) -> bool:
        if not isinstance(signature, str) or not signature.isascii():
            return False
        return hmac.compare_digest(self.sign(record), signature)

    def secrets(self) -> list[str]:
        return [self._secret]


def signing_key_from(raw: str | None, label: str = SIGNING_KEY_ENV) -> SigningKey | None:
    """The key in force for a raw setting value (None: not set). Surrounding whitespace is not part of it, so
    that a secret pasted with a trailing newline signs the same as one without."""
    if raw is None:
        return None
    if label.startswith("--"):
        raise ConfigError(
            f"{label} is a secret; secrets are not accepted on the command line.",
            hint=f"Set {SIGNING_KEY_ENV} in the environment (a CI secret) instead.",
        )
    secret = raw.strip()
    if not secret:
        raise ConfigError(
            f"{SIGNING_KEY_ENV} is set but empty.",
            hint="A missing or misspelled CI secret expands to an empty value. Give it its value (for example the "
            "output of `openssl rand -hex 32`), or remove the variable to write unsigned records.",
        )
    if len(secret) < MIN_KEY_CHARACTERS:
        raise ConfigError(
            f"{SIGNING_KEY_ENV} is shorter than {MIN_KEY_CHARACTERS} characters: too easy to guess from a signed "
            "record.",
            hint="Generate one with `openssl rand -hex 32` and keep it in a CI secret.",
        )
    return SigningKey(secret)


def signing_key_from_env(environ: Mapping[str, str]) -> SigningKey | None:
    return signing_key_from(environ.get(SIGNING_KEY_ENV))
