"""What a failed decryption means, said in chrono-ci's words: pyrage reports the age crate's errors as short
texts (and a failed chunk as a bare OSError); each becomes AgeError (the file is damaged, exit 7) or AgeKeyError
(the key does not fit, exit 2), with what to do. Nothing here ever holds key material: the age crate's texts do
not, and the file's first bytes are only looked at, never quoted."""

from __future__ import annotations

from chrono_ci.errors import AgeError, AgeKeyError

VERSION_LINE = b"age-encryption.org/v1\n"
ARMOR_START = b"-----BEGIN AGE ENCRYPTED FILE-----"
DAMAGED_HINT = (
    "The archive is damaged, cut short or was modified after it was written. Restore from another copy of it; "
    "do not trust any of its contents."
)
PASSPHRASE_ARCHIVE_HINT = (
    "chrono-ci no longer decrypts passphrase archives. Decrypt it with the age tool (`age -d -o ARCHIVE.sql.zst "
    "ARCHIVE.sql.zst.age` asks for the passphrase), then restore the decrypted file with --allow-unlisted; see "
    "'Moving from a passphrase' in the docs' Encryption page."
)


def translate(error: BaseException, head: bytes, size: int) -> AgeError:
    """The AgeError for an exception of pyrage's decrypt_io, given the archive's first bytes and its size."""
    import pyrage

    text = str(error)
    if not isinstance(error, pyrage.DecryptError):
        # The header was fine: a payload chunk did not authenticate, or the final one never came.
        return AgeError(
            "The age payload fails authentication: the archive is truncated, damaged, or has data after its end.",
            DAMAGED_HINT,
        )
    if size == 0:
        return AgeError("The file is empty, not an age-encrypted archive.", DAMAGED_HINT)
    if "No matching keys" in text:
        if b"\n-> scrypt " in head:
            return AgeKeyError("The archive is encrypted with a passphrase (age scrypt).", PASSPHRASE_ARCHIVE_HINT)
        return AgeKeyError(
            "No identity in BACKUP_ENCRYPTION_IDENTITY matches the archive's recipients.",
            "Set BACKUP_ENCRYPTION_IDENTITY to the secret key (age or SSH) of one of the recipients it was "
            "encrypted to (if the key is right, the archive's header is damaged).",
        )
    if "MAC" in text:
        return AgeError("The age header's MAC does not match: the archive is damaged.", DAMAGED_HINT)
    if "Unknown age format" in text and head.startswith(b"age-encryption.org/"):
        return AgeError("The file uses an age format version other than v1, which is not supported.", DAMAGED_HINT)
    if not (VERSION_LINE.startswith(head[: len(VERSION_LINE)]) or head.startswith(ARMOR_START)):
        return AgeError(
            "The file is not age-encrypted (it does not start with the age v1 header).",
            "Was this archive written without encryption? Then its name would not end in .age; otherwise it is "
            "damaged.",
        )
    if "Incomplete header" in text or "fill whole buffer" in text:
        return AgeError("The age file ends inside its header or before its payload: it is truncated.", DAMAGED_HINT)
    return AgeError(f"The age header is malformed ({text.splitlines()[0][:200]}).", DAMAGED_HINT)
