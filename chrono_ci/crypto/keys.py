"""The keys of age encryption, read from the settings: recipients (public keys) and identities (secret keys).

Recipients: age X25519 public keys (`age1...`) and SSH public keys (`ssh-ed25519`, `ssh-rsa`), several at
once, inline or in a file, one per line, as `age -R` reads them (https://github.com/USER.keys is such a file).
Identities: an age identity file (`AGE-SECRET-KEY-1...` lines) or an SSH private key without a passphrase,
inline or as a path. The keys are parsed by pyrage (the age project's Rust crate); this module only says, when
one does not parse, which line and why, and never what the line holds.

Plugin, tag and post-quantum recipients are refused: chrono-ci verifies and restores by decrypting its own
archives, and it can do that only with X25519 and SSH identities (a plugin identity needs the plugin's program
and, often, a person at a hardware key).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from chrono_ci.errors import AgeKeyError, ConfigError
from chrono_ci.extras import require

if TYPE_CHECKING:
    from pyrage import _Identity as Identity
    from pyrage import _Recipient as Recipient

RECIPIENTS_ENV = "BACKUP_ENCRYPTION_RECIPIENTS"
IDENTITY_ENV = "BACKUP_ENCRYPTION_IDENTITY"
SSH_KINDS = ("ssh-ed25519", "ssh-rsa")
_SSH_LINE = re.compile(r"(ssh-|ecdsa-|sk-)\S*\s")
_SEPARATORS = re.compile(r"[\s,]+")
_PEM_BEGIN = "-----BEGIN "
_KEYGEN_HINT = "Make a key pair with `age-keygen -o key.txt`: its `# public key: age1...` line is the recipient."


def recipient_kind(recipient: Recipient) -> str:
    """The kind of a recipient, x25519 or ssh, for the record's `encryption` field."""
    return "ssh" if type(recipient).__module__ == "pyrage.ssh" else "x25519"


def load_recipients(value: str) -> list[Recipient]:
    """Recipients from BACKUP_ENCRYPTION_RECIPIENTS: keys, or the path of a file holding them."""
    text, where = _inline_or_file(value, looks_inline=_looks_like_recipients, variable=RECIPIENTS_ENV)
    return parse_recipients(text, where)


def load_identities(value: str) -> tuple[list[Identity], str]:
    """Identities from BACKUP_ENCRYPTION_IDENTITY (the key itself, or the path of a file holding it), and the
    text they were read from, whose key lines are secrets to mask."""
    text, where = _inline_or_file(value, looks_inline=_looks_like_identities, variable=IDENTITY_ENV)
    return parse_identities(text, where), text


def parse_recipients(text: str, where: str = RECIPIENTS_ENV) -> list[Recipient]:
    """One or more recipients: an SSH public key per line, age1... keys separated by commas, spaces or lines;
    # comments and blank lines skipped, duplicates dropped."""
    require("age")
    import pyrage

    recipients: list[Recipient] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = [line] if _SSH_LINE.match(line + " ") else [word for word in _SEPARATORS.split(line) if word]
        for word in words:
            key = " ".join(word.split()[:2])  # an SSH key's comment is not part of the key
            if key in seen:
                continue
            seen.add(key)
            problem = _recipient_problem(word)
            if problem is None:
                try:
                    if word.startswith("ssh-"):
                        recipients.append(pyrage.ssh.Recipient.from_str(word))
                    else:
                        recipients.append(pyrage.x25519.Recipient.from_str(word))
                    continue
                except pyrage.RecipientError:
                    problem = "it does not parse (mistyped or cut short?)"
            raise AgeKeyError(
                f"{where}: line {number} holds {_describe(word)}, which is not a usable recipient: {problem}.",
                hint="Give age public keys (age1..., from `age-keygen`) or SSH public keys (ssh-ed25519 or ssh-rsa, "
                "as in ~/.ssh/id_ed25519.pub or https://github.com/USER.keys), one per line or separated by commas.",
            )
    if not recipients:
        raise AgeKeyError(
            f"{where} holds no recipient.",
            hint=f"Give one or more age1... or SSH public keys, or unset {RECIPIENTS_ENV} to back up without "
            "encryption.",
        )
    return recipients


def _recipient_problem(word: str) -> str | None:
    """Why a word cannot be a recipient before pyrage even sees it, or None."""
    lowered = word.lower()
    if _is_secret(word):
        return "it is a secret key; never put one here (it belongs in BACKUP_ENCRYPTION_IDENTITY, as a CI secret)"
    if lowered.startswith("age1"):
        if lowered.startswith("age1pq1"):
            return "post-quantum age keys are not supported by the age library chrono-ci uses"
        if lowered.rfind("1") > 3:  # a Bech32 prefix longer than "age": a plugin's or a tag recipient
            return (
                "plugin, tag and post-quantum recipients are not supported: chrono-ci must be able to decrypt its "
                "archives to verify and restore them"
            )
        return None
    if _SSH_LINE.match(word + " "):
        if word.split()[0] in SSH_KINDS:
            return None
        return f"only {' and '.join(SSH_KINDS)} SSH keys can be age recipients"
    return "it is neither an age1... key nor an SSH public key"


def _is_secret(word: str) -> bool:
    return word.lower().startswith(("age-secret-key-", "age-plugin-")) or _PEM_BEGIN in word


def _describe(word: str) -> str:
    """Enough of a recipient to find it, and nothing of a secret pasted by mistake."""
    if _is_secret(word):
        return "a secret key"
    if word.startswith(("ssh-", "ecdsa-", "sk-")):
        return f"an SSH key of type {word.split()[0][:40]}"
    return f"{word[:12]!r}..."


def parse_identities(text: str, where: str = IDENTITY_ENV) -> list[Identity]:
    """An SSH private key (PEM), or age identities: AGE-SECRET-KEY-1... lines with # comments."""
    require("age")
    import pyrage

    if _PEM_BEGIN in text:
        return [_ssh_identity(text, where)]
    identities: list[Identity] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        upper = line.upper()
        if upper.startswith("AGE-PLUGIN-") or upper.startswith("AGE-SECRET-KEY-PQ-"):
            problem = "plugin and post-quantum identities are not supported"
        elif not upper.startswith("AGE-SECRET-KEY-1"):
            problem = "it is not an AGE-SECRET-KEY-1... line"
        else:
            try:
                identities.append(pyrage.x25519.Identity.from_str(line))
                continue
            except pyrage.IdentityError:
                problem = "it does not parse (mistyped or cut short?)"
        # The line may be a real secret with a typo in it: say only where it is, never what it holds.
        raise AgeKeyError(
            f"{where}: line {number} is not a usable age identity: {problem}.",
            hint="Give the contents (or the path) of an identity file made by `age-keygen` (AGE-SECRET-KEY-1... "
            "lines, # comments allowed), or an SSH private key without a passphrase.",
        )
    if not identities:
        raise AgeKeyError(
            f"{where} holds no identity.",
            hint="Give the AGE-SECRET-KEY-1... key, an identity file, or an SSH private key (or their path).",
        )
    return identities


def _ssh_identity(text: str, where: str) -> Identity:
    import pyrage

    try:
        return pyrage.ssh.Identity.from_buffer(text.strip().encode("utf-8") + b"\n")
    except pyrage.IdentityError as error:
        reason = str(error)
    if "decrypted first" in reason:
        raise AgeKeyError(
            f"{where}: the SSH private key is protected by a passphrase, and chrono-ci cannot ask for it.",
            hint="Keep a copy without a passphrase as a CI secret (`cp id_ed25519 ci_key && ssh-keygen -p -N '' "
            "-f ci_key`), or decrypt with `age -d -i KEY` by hand.",
        )
    if "unsupported" in reason:
        raise AgeKeyError(
            f"{where}: this kind of SSH key cannot be an age identity.",
            hint=f"Only {' and '.join(SSH_KINDS)} keys work with age. {_KEYGEN_HINT}",
        )
    raise AgeKeyError(
        f"{where}: the SSH private key does not parse (cut short, or not an OpenSSH/PEM private key).",
        hint="Give the whole file, from its -----BEGIN line to its -----END line.",
    )


def identity_secrets(text: str) -> list[str]:
    """The lines of identity text that hold key material, for masking."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("#", "-----")) and len(line.strip()) >= 16
    ]


def _looks_like_recipients(value: str) -> bool:
    first = value.strip().split(None, 1)[0] if value.strip() else ""
    return first.lower().startswith(("age1", "ssh-", "ecdsa-", "sk-", "#", "age-")) or "," in first


def _looks_like_identities(value: str) -> bool:
    return "AGE-SECRET-KEY-" in value.upper() or "AGE-PLUGIN-" in value.upper() or _PEM_BEGIN in value


def _inline_or_file(value: str, *, looks_inline: Callable[[str], bool], variable: str) -> tuple[str, str]:
    """(the keys, where they came from): the value itself, or the file it names (as `age -R` / `age -i` take)."""
    if looks_inline(value):
        return value, variable
    path = Path(value.strip()).expanduser()
    try:
        return path.read_text(), f"{variable} (the file {path.name})"
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise ConfigError(
            f"{variable} is neither keys nor a readable file ({reason}).",
            hint="Give the keys themselves (from a CI secret) or the path of a file that holds them.",
        ) from None
