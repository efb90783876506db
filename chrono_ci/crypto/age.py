"""Streaming encryption and decryption in the age v1 file format (c2sp.org/age, age-encryption.org/v1).

Two recipient types: X25519 public keys (`age1...`, decrypted with `AGE-SECRET-KEY-1...` identities) and an
scrypt passphrase. Both directions are push-based and hold at most one 64 KiB chunk beyond the piece being
pushed, so an archive of any size is encrypted or decrypted in constant memory, and the output of one side is
readable by the reference `age` tool and by rage (and the other way round).

Errors are AgeError. Damage (a bad header MAC, a chunk that fails authentication, truncation, trailing data,
a malformed header) exits VERIFY; a key that does not fit (no identity matches, wrong passphrase, a key that
does not parse) exits CONFIG. No message ever contains key material or the passphrase.

Why one long module: it is one file format, read against one specification from top to bottom (Bech32 keys,
the recipient stanzas, the header and its MAC, the STREAM payload), with one way in (Encryptor, Decryptor and
the key parsers); its parts mean nothing apart from each other.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from chrono_ci.errors import AgeError, AgeKeyError

RECIPIENTS_ENV = "BACKUP_ENCRYPTION_RECIPIENTS"
IDENTITY_ENV = "BACKUP_ENCRYPTION_IDENTITY"
PASSPHRASE_ENV = "BACKUP_ENCRYPTION_PASSPHRASE"

VERSION_LINE = b"age-encryption.org/v1\n"
ARMOR_START = b"-----BEGIN AGE ENCRYPTED FILE-----"
CHUNK_SIZE = 64 * 1024  # "Payload": plaintext chunks of exactly 64 KiB, except the final one
TAG_SIZE = 16
SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
FILE_KEY_SIZE = 16
PAYLOAD_NONCE_SIZE = 16
X25519_LABEL = b"age-encryption.org/v1/X25519"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
DEFAULT_WORK_FACTOR = 18  # log2(N): what age itself uses, about a second of work
MAX_WORK_FACTOR = 22  # the reference implementation's default ceiling; 2**22 already needs 4 GiB of memory
MAX_HEADER_SIZE = 256 * 1024  # thousands of stanzas; past that the input is not an age file we wrote
_ZERO_NONCE = bytes(12)  # stanza bodies are sealed once per key, so a fixed nonce is safe ("X25519 recipient stanza")
_B64_CHARS = re.compile(rb"[A-Za-z0-9+/]*")
_DECIMAL = re.compile(r"[1-9][0-9]*")
_DAMAGED_HINT = (
    "The archive is damaged or was modified after it was written. Restore from another copy of it; "
    "do not trust any of its contents."
)


# --- Bech32 (BIP 173, without its 90-character limit, as "Conventions used in this document" says) ---

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_VALUES = {char: value for value, char in enumerate(_BECH32_CHARSET)}
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: Sequence[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = ((checksum & 0x1FFFFFF) << 5) ^ value
        for bit, generator in enumerate(_BECH32_GENERATOR):
            if (top >> bit) & 1:
                checksum ^= generator
    return checksum


def _bech32_hrp_expand(hrp: str) -> list[int]:
    return [ord(char) >> 5 for char in hrp] + [0] + [ord(char) & 31 for char in hrp]


def _regroup(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    accumulator = 0
    bits = 0
    out: list[int] = []
    mask = (1 << to_bits) - 1
    for value in data:
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((accumulator >> bits) & mask)
    if pad:
        if bits:
            out.append((accumulator << (to_bits - bits)) & mask)
    elif bits >= from_bits or (accumulator << (to_bits - bits)) & mask:
        # BIP 173: at most 4 bits of zero padding when going back to bytes, or the encoding is not canonical.
        raise ValueError("invalid padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Bech32 string for `data` under human-readable part `hrp`, in the case `hrp` is given in."""
    lower = hrp.lower()
    words = _regroup(data, 8, 5, pad=True)
    polymod = _bech32_polymod([*_bech32_hrp_expand(lower), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> (5 * (5 - i))) & 31 for i in range(6)]
    text = lower + "1" + "".join(_BECH32_CHARSET[word] for word in words + checksum)
    return text.upper() if hrp.isupper() else text


def bech32_decode(text: str) -> tuple[str, bytes]:
    """(lowercase hrp, data) of a Bech32 string; ValueError says what is wrong without echoing the input."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed upper and lower case")
    if any(ord(char) < 33 or ord(char) > 126 for char in text):
        raise ValueError("invalid character")
    text = text.lower()  # "the checksum is always computed over the lowercase string"
    separator = text.rfind("1")
    if separator < 1 or len(text) - separator - 1 < 6:
        raise ValueError("missing separator or checksum")
    hrp, rest = text[:separator], text[separator + 1 :]
    try:
        words = [_BECH32_VALUES[char] for char in rest]
    except KeyError:
        raise ValueError("invalid character") from None
    if _bech32_polymod([*_bech32_hrp_expand(hrp), *words]) != 1:
        raise ValueError("bad checksum (mistyped or truncated)")
    return hrp, bytes(_regroup(words[:-6], 5, 8, pad=False))


# --- Keys ---


class X25519Recipient:
    """An age X25519 public key, `age1...`."""

    def __init__(self, public_key: bytes) -> None:
        if len(public_key) != 32:
            raise ValueError("an X25519 public key is 32 bytes")
        self.public_bytes = public_key
        self._key = X25519PublicKey.from_public_bytes(public_key)

    @classmethod
    def from_string(cls, text: str) -> X25519Recipient:
        hrp, data = bech32_decode(text)
        if hrp != "age":
            raise ValueError(_unsupported_kind(hrp))
        if len(data) != 32:
            raise ValueError("wrong key length")
        return cls(data)

    def __str__(self) -> str:
        return bech32_encode("age", self.public_bytes)

    def __repr__(self) -> str:
        return f"X25519Recipient({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other.public_bytes == self.public_bytes

    def __hash__(self) -> int:
        return hash(self.public_bytes)

    def _wrap(self, file_key: bytes) -> _Stanza:
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        try:
            shared = ephemeral.exchange(self._key)
        except ValueError:
            # A low-order point gives an all-zero secret, which the spec makes identities refuse.
            raise AgeKeyError(
                f"The age recipient {str(self)[:10]}... is not a usable X25519 public key.",
                hint=f"Check {RECIPIENTS_ENV}: use the public key that age-keygen printed.",
            ) from None
        wrap_key = _hkdf(shared, share + self.public_bytes, X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return _Stanza(["X25519", _b64encode(share)], body)


class X25519Identity:
    """An age X25519 secret key, `AGE-SECRET-KEY-1...`. Its repr shows only the public recipient."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("an X25519 secret key is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self.recipient = X25519Recipient(self._key.public_key().public_bytes_raw())

    @classmethod
    def from_string(cls, text: str) -> X25519Identity:
        hrp, data = bech32_decode(text)
        if hrp != "age-secret-key-":
            raise ValueError(_unsupported_kind(hrp))
        if len(data) != 32:
            raise ValueError("wrong key length")
        return cls(data)

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient})"

    def _unwrap(self, stanza: _Stanza) -> bytes | None:
        """The file key if the stanza is addressed to this identity, None if it is someone else's."""
        share = _b64decode(stanza.args[1].encode("ascii"))
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:
            # "If the shared secret is all 0x00 bytes, the identity implementation MUST abort."
            raise AgeError(
                "An X25519 stanza in the age header has an invalid ephemeral share.", _DAMAGED_HINT
            ) from None
        wrap_key = _hkdf(shared, share + self.recipient.public_bytes, X25519_LABEL)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            return None


def _unsupported_kind(hrp: str) -> str:
    if hrp.startswith("age1pq") or hrp.startswith("age-secret-key-pq-"):
        return "post-quantum age keys are not supported, only X25519 ones"
    if hrp.startswith("age1tag") or hrp.startswith("age1") or hrp.startswith("age-plugin-"):
        return "age plugin keys are not supported, only X25519 ones"
    if hrp == "age-secret-key-":
        return "it is a secret identity, not a public recipient"
    if hrp == "age":
        return "it is a public recipient, not a secret identity"
    return "not an age X25519 key"


def parse_recipients(text: str) -> list[X25519Recipient]:
    """`age1...` public keys separated by commas, spaces or newlines (duplicates dropped, order kept)."""
    recipients: list[X25519Recipient] = []
    for value in dict.fromkeys(word for word in re.split(r"[\s,]+", text) if word):
        try:
            recipients.append(X25519Recipient.from_string(value))
        except ValueError as error:
            raise AgeKeyError(
                f"{RECIPIENTS_ENV}: {value[:10]!r}... is not an age X25519 recipient ({error}).",
                hint="Use public keys as printed by `age-keygen` (they start with age1), separated by commas. "
                "SSH keys, plugin and post-quantum recipients are not supported.",
            ) from None
    if not recipients:
        raise AgeKeyError(
            f"{RECIPIENTS_ENV} is set but holds no recipient.",
            hint="Set it to one or more age1... public keys, or unset it to store backups unencrypted.",
        )
    return recipients


def parse_identities(text: str) -> list[X25519Identity]:
    """`AGE-SECRET-KEY-1...` lines, as in an age identity file (# comments and blank lines are skipped)."""
    identities: list[X25519Identity] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(X25519Identity.from_string(line))
        except ValueError as error:
            # The line may be a real secret with a typo in it: name only where it is, never what it holds.
            raise AgeKeyError(
                f"{IDENTITY_ENV}: line {number} is not an age X25519 identity ({error}).",
                hint="Use the contents of an identity file made by `age-keygen`: one AGE-SECRET-KEY-1... per line, "
                "# comments allowed.",
            ) from None
    if not identities:
        raise AgeKeyError(
            f"{IDENTITY_ENV} is set but holds no identity.",
            hint="Set it to the contents of the age identity file (AGE-SECRET-KEY-1... lines).",
        )
    return identities


def generate_identity() -> tuple[str, str]:
    """A new (AGE-SECRET-KEY-1..., age1...) pair, like `age-keygen`."""
    key = X25519PrivateKey.generate()
    secret = bech32_encode("AGE-SECRET-KEY-", key.private_bytes_raw())
    return secret, bech32_encode("age", key.public_key().public_bytes_raw())


# --- Header ---


class _Stanza:
    def __init__(self, args: list[str], body: bytes) -> None:
        self.args = args
        self.body = body

    def encode(self) -> bytes:
        text = _b64encode(self.body)
        # "The body MUST end with a line shorter than 64 characters, which MAY be empty": a body whose
        # encoding is a multiple of 64 characters (or empty) gets an empty last line.
        lines = [text[i : i + 64] for i in range(0, len(text), 64)]
        if len(text) % 64 == 0:
            lines.append("")
        return ("-> " + " ".join(self.args) + "\n" + "".join(line + "\n" for line in lines)).encode("ascii")


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: bytes) -> bytes:
    """Unpadded, canonical base64 only ("Conventions used in this document"); ValueError otherwise."""
    if not _B64_CHARS.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("not unpadded base64") from None
    # Non-zero leftover bits decode to the same bytes: refuse them, or the header would be malleable.
    if _b64encode(data).encode("ascii") != text:
        raise ValueError("non-canonical base64")
    return data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _header_mac(file_key: bytes, mac_input: bytes) -> HMAC:
    """HMAC over the header up to and including "---", under HKDF(file key, "", "header") ("Header MAC")."""
    mac = HMAC(_hkdf(file_key, b"", b"header"), hashes.SHA256())
    mac.update(mac_input)
    return mac


def _scrypt_key(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    return Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1).derive(passphrase)


def _malformed(detail: str) -> AgeError:
    return AgeError(f"The age header is malformed: {detail}.", _DAMAGED_HINT)


def _parse_header(header: bytes) -> tuple[list[_Stanza], bytes, bytes]:
    """(stanzas, MAC, MAC input) of a complete header that ends with its "--- " line (ABNF in "Header")."""
    lines = header.split(b"\n")
    if lines[0] + b"\n" != VERSION_LINE or lines[-1] != b"":
        raise _malformed("bad version line")
    stanzas: list[_Stanza] = []
    index = 1
    offset = len(VERSION_LINE)
    while not lines[index].startswith(b"---"):
        arg_line = lines[index]
        if not arg_line.startswith(b"-> "):
            raise _malformed("a line that is neither a stanza nor the MAC")
        args = arg_line[3:].split(b" ")
        if any(not arg or any(byte < 0x21 or byte > 0x7E for byte in arg) for arg in args):
            raise _malformed("a stanza with an empty or non-printable argument")
        offset += len(arg_line) + 1
        index += 1
        body_lines: list[bytes] = []
        while True:
            line = lines[index]
            if len(line) > 64 or not _B64_CHARS.fullmatch(line):
                raise _malformed("a stanza body that is not base64 wrapped at 64 columns")
            body_lines.append(line)
            offset += len(line) + 1
            index += 1
            if len(line) < 64:
                break
        try:
            body = _b64decode(b"".join(body_lines))
        except ValueError as error:
            raise _malformed(f"a stanza body in {error}") from None
        stanzas.append(_Stanza([arg.decode("ascii") for arg in args], body))
    end = lines[index]
    if not end.startswith(b"--- ") or len(end) != 47 or index != len(lines) - 2:
        raise _malformed("bad MAC line")
    try:
        mac = _b64decode(end[4:])
    except ValueError:
        raise _malformed("bad MAC encoding") from None
    if not stanzas:
        raise _malformed("no recipient stanza")
    return stanzas, mac, header[: offset + 3]


def _stream_nonce(counter: int, last: bool) -> bytes:
    # "Payload": an 11-byte big-endian chunk counter, then 0x01 for the final chunk and 0x00 before it.
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# --- Streaming ---


class Encryptor:
    """Encrypts a stream pushed through update(); finish() returns the final chunk.

    Plaintext is sealed in 64 KiB chunks as soon as it is known not to be the last one, so at most 64 KiB plus
    the piece being pushed is held. compress/flush make it a drop-in stage beside the compressors in pipeline.
    """

    def __init__(
        self,
        recipients: Sequence[X25519Recipient] = (),
        passphrase: str | None = None,
        *,
        work_factor: int = DEFAULT_WORK_FACTOR,
    ) -> None:
        if bool(recipients) == (passphrase is not None):
            raise AgeKeyError(
                "Encrypting needs either age recipients or a passphrase, and not both.",
                hint=f"Set exactly one of {RECIPIENTS_ENV} and {PASSPHRASE_ENV}.",
            )
        file_key = os.urandom(FILE_KEY_SIZE)
        if passphrase is not None:
            if not passphrase:
                raise AgeKeyError(f"{PASSPHRASE_ENV} is empty.", hint="Set a long passphrase, or unset it.")
            if not 1 <= work_factor <= MAX_WORK_FACTOR:
                raise AgeKeyError(
                    f"The scrypt work factor must be from 1 to {MAX_WORK_FACTOR}.",
                    hint=f"Leave it at the default of {DEFAULT_WORK_FACTOR}.",
                )
            salt = os.urandom(16)
            wrap_key = _scrypt_key(passphrase.encode("utf-8"), salt, work_factor)
            body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
            stanzas = [_Stanza(["scrypt", _b64encode(salt), str(work_factor)], body)]
        else:
            stanzas = [recipient._wrap(file_key) for recipient in recipients]
        mac_input = VERSION_LINE + b"".join(stanza.encode() for stanza in stanzas) + b"---"
        mac = _header_mac(file_key, mac_input).finalize()
        nonce = os.urandom(PAYLOAD_NONCE_SIZE)
        self._pending: bytes = mac_input + b" " + _b64encode(mac).encode("ascii") + b"\n" + nonce
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._buffer = bytearray()
        self._counter = 0
        self._finished = False

    def _seal(self, chunk: bytes | memoryview, last: bool) -> bytes:
        sealed = self._aead.encrypt(_stream_nonce(self._counter, last), chunk, None)
        self._counter += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise RuntimeError("Encryptor.update() after finish()")
        out = [self._pending]
        self._pending = b""
        self._buffer += data
        done = 0
        # Strictly more than a chunk: a full chunk at the very end must be sealed as the final one.
        with memoryview(self._buffer) as view:
            while len(view) - done > CHUNK_SIZE:
                out.append(self._seal(view[done : done + CHUNK_SIZE], last=False))
                done += CHUNK_SIZE
        del self._buffer[:done]
        return b"".join(out)

    def finish(self) -> bytes:
        if self._finished:
            raise RuntimeError("Encryptor.finish() called twice")
        self._finished = True
        # The final chunk is empty only when the whole payload is ("Payload").
        out = self._pending + self._seal(bytes(self._buffer), last=True)
        self._pending = b""
        self._buffer.clear()
        return out

    compress = update
    flush = finish


class Decryptor:
    """Decrypts a stream pushed through update()/feed(); finish() proves it ended with a valid final chunk.

    A chunk's plaintext is released only once it has authenticated, with the STREAM nonce telling a middle
    chunk from the final one, so everything comes out of update() and at most one partial sealed chunk plus
    the piece being pushed is held. Data after the final chunk fails at once; finish() fails if the final
    chunk never came. After any error the object refuses further use.
    """

    def __init__(
        self,
        identities: Sequence[X25519Identity] = (),
        passphrase: str | None = None,
        *,
        max_work_factor: int = MAX_WORK_FACTOR,
    ) -> None:
        if not identities and passphrase is None:
            raise AgeKeyError(
                "Decrypting needs age identities or a passphrase.",
                hint=f"Set {IDENTITY_ENV} (for archives encrypted to recipients) or {PASSPHRASE_ENV}.",
            )
        self._identities = list(identities)
        self._passphrase = passphrase.encode("utf-8") if passphrase is not None else None
        self._max_work_factor = max_work_factor
        self._buffer = bytearray()
        self._scanned = 0  # where the search for the header's end resumes
        self._file_key: bytes | None = None
        self._aead: ChaCha20Poly1305 | None = None
        self._counter = 0  # chunks authenticated as non-final so far
        self._ended = False  # the final chunk has been authenticated and released
        self._closed = False

    def update(self, data: bytes) -> bytes:
        if self._closed:
            raise RuntimeError("Decryptor used after finish() or after an error")
        try:
            return self._update(data)
        except BaseException:
            self._closed = True
            raise

    feed = update

    def finish(self) -> None:
        if self._closed:
            raise RuntimeError("Decryptor used after finish() or after an error")
        self._closed = True
        if self._file_key is None:
            if not self._buffer:
                raise AgeError("The file is empty, not an age-encrypted archive.", _DAMAGED_HINT)
            self._check_start(final=True)
            raise AgeError("The age file ends inside its header: it is truncated.", _DAMAGED_HINT)
        if self._aead is None:
            raise AgeError("The age file ends before its payload: it is truncated.", _DAMAGED_HINT)
        if self._ended:
            return
        if self._buffer:
            # update() already tried these bytes as the final chunk, and they did not authenticate. Extra bytes
            # glued to a short final chunk look the same: finding where it ends would mean a trial per length.
            raise AgeError(
                f"Chunk {self._counter + 1} of the age payload (the last one present) fails authentication: "
                "the archive is truncated, damaged, or has data after its end.",
                _DAMAGED_HINT,
            )
        raise AgeError(
            f"The age payload stops after chunk {self._counter}, which is not marked final: it is truncated.",
            _DAMAGED_HINT,
        )

    def _update(self, data: bytes) -> bytes:
        if self._ended:
            if data:
                raise AgeError("The age payload has data after its final chunk.", _DAMAGED_HINT)
            return b""
        self._buffer += data
        if self._file_key is None and not self._read_header():
            return b""
        if self._aead is None:
            if len(self._buffer) < PAYLOAD_NONCE_SIZE:
                return b""
            assert self._file_key is not None
            nonce = bytes(self._buffer[:PAYLOAD_NONCE_SIZE])
            del self._buffer[:PAYLOAD_NONCE_SIZE]
            self._aead = ChaCha20Poly1305(_hkdf(self._file_key, nonce, b"payload"))
        out: list[bytes] = []
        done = 0
        with memoryview(self._buffer) as view:
            while not self._ended and len(view) - done >= SEALED_CHUNK_SIZE:
                out.append(self._open_full(view[done : done + SEALED_CHUNK_SIZE], more=len(view) - done))
                done += SEALED_CHUNK_SIZE
            rest = len(view) - done
            if not self._ended and rest >= TAG_SIZE:
                # Nothing in the format says where the payload ends, and finish() has no output: every
                # complete-looking tail must be tried as the final chunk now. The cost is one failed
                # authentication of less than a chunk per call, small next to 1 MiB reads.
                plaintext = self._try_open(view[done:], last=True)
                if plaintext is not None:
                    if not plaintext and self._counter > 0:
                        raise AgeError(
                            "The age payload ends with an empty chunk after data, which is invalid.", _DAMAGED_HINT
                        )
                    out.append(plaintext)
                    self._ended = True
                    done = len(view)
        del self._buffer[:done]
        return b"".join(out)

    def _try_open(self, sealed: memoryview, last: bool) -> bytes | None:
        assert self._aead is not None
        try:
            return self._aead.decrypt(_stream_nonce(self._counter, last), sealed, None)
        except InvalidTag:
            return None

    def _open_full(self, sealed: memoryview, more: int) -> bytes:
        """A chunk of full size: a middle chunk, or the final one when the payload is a multiple of 64 KiB."""
        plaintext = self._try_open(sealed, last=False)
        if plaintext is not None:
            self._counter += 1
            return plaintext
        plaintext = self._try_open(sealed, last=True)
        if plaintext is None:
            raise AgeError(
                f"Chunk {self._counter + 1} of the age payload fails authentication: the archive is damaged.",
                _DAMAGED_HINT,
            )
        if more > SEALED_CHUNK_SIZE:
            raise AgeError(
                f"The age payload has data after its final chunk (chunk {self._counter + 1}).", _DAMAGED_HINT
            )
        self._ended = True
        return plaintext

    def _check_start(self, final: bool) -> None:
        """Fail early on input that is not an age v1 file, before buffering a would-be header."""
        seen = bytes(self._buffer[: len(ARMOR_START)])
        if VERSION_LINE.startswith(seen[: len(VERSION_LINE)]):
            return
        if len(seen) < len(ARMOR_START) and ARMOR_START.startswith(seen) and not final:
            return  # may still turn out to be armor: wait for enough bytes to say which
        if seen.startswith(ARMOR_START):
            raise AgeError(
                "The file is ASCII-armored age (-----BEGIN AGE ENCRYPTED FILE-----); only binary age is read here.",
                hint="Decrypt it with the age tool instead, or write archives in binary form (without --armor).",
            )
        if seen.startswith(b"age-encryption.org/"):
            raise AgeError("The file uses an age format version other than v1, which is not supported.", _DAMAGED_HINT)
        raise AgeError(
            "The file is not age-encrypted (it does not start with the age v1 header).",
            hint="Was this archive written without encryption? Then restore it without "
            f"{IDENTITY_ENV}/{PASSPHRASE_ENV}; otherwise it is damaged.",
        )

    def _read_header(self) -> bool:
        """Parse and authenticate the header once all of it is buffered; False while more is needed."""
        self._check_start(final=False)
        # The MAC line is the only header line starting with "---": stanza lines start "-> " and body
        # lines are base64, which has no "-".
        marker = self._buffer.find(b"\n---", max(self._scanned - 3, 0))
        end = self._buffer.find(b"\n", marker + 1) if marker >= 0 else -1
        if end < 0:
            self._scanned = marker if marker >= 0 else len(self._buffer)
            if len(self._buffer) > MAX_HEADER_SIZE:
                raise _malformed(f"no end of header within {MAX_HEADER_SIZE // 1024} KiB")
            return False
        header = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        stanzas, mac, mac_input = _parse_header(header)
        file_key = self._unwrap(stanzas)
        try:
            _header_mac(file_key, mac_input).verify(mac)
        except InvalidSignature:
            raise AgeError("The age header's MAC does not match: the archive is damaged.", _DAMAGED_HINT) from None
        self._file_key = file_key
        return True

    def _unwrap(self, stanzas: list[_Stanza]) -> bytes:
        scrypt = [stanza for stanza in stanzas if stanza.args[0] == "scrypt"]
        if scrypt:
            # "An scrypt stanza, if present, MUST be the only stanza in the header": otherwise a holder of any
            # other key could have written a file that looks passphrase-authenticated.
            if len(stanzas) != 1:
                raise _malformed("an scrypt stanza mixed with other stanzas")
            return self._unwrap_scrypt(scrypt[0])
        x25519 = [stanza for stanza in stanzas if stanza.args[0] == "X25519"]
        for stanza in x25519:
            # "X25519 recipient stanza": reject malformed stanzas, and check the body length before
            # decrypting, against partitioning oracles.
            if len(stanza.args) != 2:
                raise _malformed("an X25519 stanza without exactly one argument")
            try:
                share = _b64decode(stanza.args[1].encode("ascii"))
            except ValueError as error:
                raise _malformed(f"an X25519 share in {error}") from None
            if len(share) != 32 or len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
                raise _malformed("an X25519 stanza of the wrong size")
        if not self._identities:
            raise AgeKeyError(
                "The archive is encrypted to age recipients (public keys), not with a passphrase.",
                hint=f"Set {IDENTITY_ENV} to the identity (AGE-SECRET-KEY-1...) of one of its recipients.",
            )
        for identity in self._identities:
            for stanza in x25519:
                file_key = identity._unwrap(stanza)
                if file_key is not None:
                    return file_key
        raise AgeKeyError(
            f"No identity in {IDENTITY_ENV} matches the archive's recipients.",
            hint=f"Set {IDENTITY_ENV} to the secret key of one of the recipients it was encrypted to "
            "(if the key is right, the archive's header is damaged).",
        )

    def _unwrap_scrypt(self, stanza: _Stanza) -> bytes:
        # "scrypt recipient stanza": three arguments, a 16-byte salt, a decimal without leading zeros.
        if len(stanza.args) != 3 or not _DECIMAL.fullmatch(stanza.args[2]):
            raise _malformed("a badly formed scrypt stanza")
        try:
            salt = _b64decode(stanza.args[1].encode("ascii"))
        except ValueError as error:
            raise _malformed(f"an scrypt salt in {error}") from None
        if len(salt) != 16 or len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
            raise _malformed("an scrypt stanza of the wrong size")
        work_factor = int(stanza.args[2])
        if work_factor > self._max_work_factor:
            # Checked before any work: a forged header could otherwise demand terabytes of memory.
            raise AgeError(
                f"The archive asks for an scrypt work factor of 2^{work_factor}, above the limit of "
                f"2^{self._max_work_factor}; refusing to spend that much memory and time.",
                hint="Archives written by chrono-ci use 2^18: this one was written elsewhere or was tampered with.",
            )
        if self._passphrase is None:
            raise AgeKeyError(
                "The archive is encrypted with a passphrase, not to age recipients.",
                hint=f"Set {PASSPHRASE_ENV} to the passphrase it was written with.",
            )
        wrap_key = _scrypt_key(self._passphrase, salt, work_factor)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            raise AgeKeyError(
                "Wrong passphrase for this archive.",
                hint=f"Set {PASSPHRASE_ENV} to the passphrase it was written with "
                "(if it is right, the archive's header is damaged).",
            ) from None
