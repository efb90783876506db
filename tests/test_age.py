"""age v1 encryption: interop both ways with pyrage (and the age CLI when installed), and every failure mode."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import shutil
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pyrage
import pytest

from chrono_ci.crypto.age import (
    CHUNK_SIZE,
    SEALED_CHUNK_SIZE,
    AgeError,
    Decryptor,
    Encryptor,
    X25519Identity,
    X25519Recipient,
    _parse_header,
    _Stanza,
    bech32_decode,
    bech32_encode,
    generate_identity,
    parse_identities,
    parse_recipients,
)
from chrono_ci.errors import ConfigError, ExitCode
from chrono_ci.pipeline.stream import Compressor, make_compressor

KiB = 1024
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 3_000_000]
FAST = 10  # scrypt work factor for tests that only exercise our own round trip
PASSWORD = "correct horse battery staple"

SECRET, PUBLIC = generate_identity()
OTHER_SECRET, OTHER_PUBLIC = generate_identity()


def _data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _splits(data: bytes, rng: random.Random) -> Iterator[bytes]:
    """Pieces from 1 byte to 300 KiB, mixing the tiny sizes that cross every boundary with large ones."""
    pos = 0
    while pos < len(data):
        size = rng.choice([1, rng.randint(1, 100), rng.randint(1, 300 * KiB), rng.randint(1, 300 * KiB)])
        yield data[pos : pos + size]
        pos += size


def _encrypt(data: bytes, encryptor: Encryptor, seed: int = 0) -> bytes:
    out = [encryptor.update(piece) for piece in _splits(data, random.Random(seed))]
    return b"".join(out) + encryptor.finish()


def _decrypt(ciphertext: bytes, decryptor: Decryptor, seed: int = 0) -> bytes:
    out = [decryptor.update(piece) for piece in _splits(ciphertext, random.Random(seed))]
    decryptor.finish()
    return b"".join(out)


def _mine(secret: str = SECRET) -> Decryptor:
    return Decryptor(parse_identities(secret))


def _x25519_file(data: bytes) -> bytes:
    return _encrypt(data, Encryptor(parse_recipients(PUBLIC)))


def _header_length(ciphertext: bytes | bytearray) -> int:
    return ciphertext.index(b"\n", ciphertext.index(b"\n---") + 1) + 1


def _failure(ciphertext: bytes, decryptor: Decryptor, pieces: list[int] | None = None) -> AgeError:
    """Feed the ciphertext (whole, or cut at the given offsets), finish, and return the AgeError raised."""
    cuts = [0, *(pieces or []), len(ciphertext)]
    with pytest.raises(AgeError) as caught:
        for start, end in itertools.pairwise(cuts):
            decryptor.update(ciphertext[start:end])
        decryptor.finish()
    return caught.value


def _assert_no_secret(error: AgeError, *secrets: str) -> None:
    for secret in secrets:
        for text in (error.message, error.hint, str(error)):
            # Not even a fragment: a message naming the first ten characters would leak the HRP only.
            assert secret[15:35] not in text
            assert secret not in text


# --- keys and bech32 ---


def test_spec_example_identity_gives_the_spec_recipient() -> None:
    identity = X25519Identity.from_string("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
    assert str(identity.recipient) == "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    assert "GFPYY" not in repr(identity)


def test_bech32_round_trips_and_bip173_vectors() -> None:
    rng = random.Random(3)
    for size in (0, 1, 5, 31, 32, 33, 100):
        data = rng.randbytes(size)
        for hrp in ("age", "AGE-SECRET-KEY-"):
            text = bech32_encode(hrp, data)
            assert text == text.upper() if hrp.isupper() else text == text.lower()
            assert bech32_decode(text) == (hrp.lower(), data)
    for valid in ("A12UEL5L", "a12uel5l", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw", "?1ezyfcl"):
        hrp, data = bech32_decode(valid)
        assert bech32_encode(hrp, data) == valid.lower()
    for invalid in ("a12uel5x", "A12uEL5L", "1pzry9x0s0muk", "pzry9x0s0muk", "abc1rzg", "a1b2c3d4e5f6"):
        with pytest.raises(ValueError):
            bech32_decode(invalid)


def test_generated_keys_agree_with_pyrage() -> None:
    assert str(pyrage.x25519.Identity.from_str(SECRET).to_public()) == PUBLIC
    theirs = pyrage.x25519.Identity.generate()
    assert str(parse_identities(str(theirs))[0].recipient) == str(theirs.to_public())
    assert parse_recipients(str(theirs.to_public())) == [X25519Recipient.from_string(str(theirs.to_public()))]


def test_parse_recipients_separators_and_a_bad_checksum() -> None:
    assert [str(r) for r in parse_recipients(f" {PUBLIC},{OTHER_PUBLIC}\n{PUBLIC}  ")] == [PUBLIC, OTHER_PUBLIC]
    typo = PUBLIC[:-1] + ("q" if PUBLIC[-1] != "q" else "p")
    with pytest.raises(ConfigError) as caught:
        parse_recipients(f"{OTHER_PUBLIC}, {typo}")
    assert isinstance(caught.value, AgeError)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert "BACKUP_ENCRYPTION_RECIPIENTS" in caught.value.message
    assert typo[:10] in caught.value.message and typo not in caught.value.message
    assert "checksum" in caught.value.message
    for bad in ("", " , ", SECRET, "ssh-ed25519"):
        with pytest.raises(ConfigError):
            parse_recipients(bad)


def test_parse_identities_reads_an_identity_file_and_never_echoes_a_bad_key() -> None:
    text = f"# created: 2024-01-01\n# public key: {PUBLIC}\n{SECRET}\n\n  {OTHER_SECRET.lower()}  \n"
    assert [str(i.recipient) for i in parse_identities(text)] == [PUBLIC, OTHER_PUBLIC]
    damaged = SECRET[:30] + ("Q" if SECRET[30] != "Q" else "P") + SECRET[31:]
    with pytest.raises(ConfigError) as caught:
        parse_identities(f"# key\n{damaged}\n")
    error = caught.value
    assert isinstance(error, AgeError) and error.exit_code == ExitCode.CONFIG
    assert "BACKUP_ENCRYPTION_IDENTITY" in error.message and "line 2" in error.message
    _assert_no_secret(error, damaged, SECRET)
    with pytest.raises(ConfigError, match="public recipient"):
        parse_identities(PUBLIC)
    with pytest.raises(ConfigError, match="no identity"):
        parse_identities("# only a comment\n")


def test_modes_must_be_chosen() -> None:
    recipients = parse_recipients(PUBLIC)
    for bad in (lambda: Encryptor(), lambda: Encryptor(recipients, PASSWORD), lambda: Decryptor()):
        with pytest.raises(ConfigError) as caught:
            bad()
        assert caught.value.exit_code == ExitCode.CONFIG
    with pytest.raises(ConfigError):
        Encryptor(passphrase="")


# --- round trips and interop ---


@pytest.mark.parametrize("size", SIZES)
def test_x25519_interop_at_every_chunk_boundary(size: int) -> None:
    data = _data(size, seed=size)
    ours = _encrypt(data, Encryptor(parse_recipients(PUBLIC)), seed=size)
    chunks = max(1, -(-size // CHUNK_SIZE))
    # "Payload": a full last chunk is the final chunk itself, never followed by an empty one.
    assert len(ours) == _header_length(ours) + 16 + size + 16 * chunks
    assert pyrage.decrypt(ours, [pyrage.x25519.Identity.from_str(SECRET)]) == data
    assert _decrypt(ours, _mine(), seed=size + 1) == data
    theirs = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(PUBLIC)])
    assert _decrypt(theirs, _mine(), seed=size + 2) == data


def test_multiple_recipients() -> None:
    third_secret, third_public = generate_identity()
    data = _data(200_000)
    ours = _encrypt(data, Encryptor(parse_recipients(f"{PUBLIC},{OTHER_PUBLIC},{third_public}")))
    assert ours.count(b"\n-> X25519 ") == 3
    for secret in (SECRET, OTHER_SECRET, third_secret):
        assert pyrage.decrypt(ours, [pyrage.x25519.Identity.from_str(secret)]) == data
        assert _decrypt(ours, _mine(secret)) == data
    theirs = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(p) for p in (PUBLIC, third_public)])
    stranger, _ = generate_identity()
    assert _decrypt(theirs, Decryptor(parse_identities(f"{stranger}\n{third_secret}"))) == data


def test_scrypt_default_work_factor_decrypts_with_pyrage() -> None:
    data = _data(CHUNK_SIZE + 5)
    ours = _encrypt(data, Encryptor(passphrase=PASSWORD))
    assert b"\n-> scrypt " in ours and ours.split(b"\n")[1].endswith(b" 18")
    assert pyrage.passphrase.decrypt(ours, PASSWORD) == data


def test_scrypt_from_pyrage_decrypts_with_ours() -> None:
    data = _data(3 * CHUNK_SIZE)
    theirs = pyrage.passphrase.encrypt(data, PASSWORD)
    assert _decrypt(theirs, Decryptor(passphrase=PASSWORD)) == data


def test_scrypt_round_trip_with_unicode_passphrase() -> None:
    data = _data(1000)
    ours = _encrypt(data, Encryptor(passphrase="pässwörd ✓", work_factor=FAST))
    assert _decrypt(ours, Decryptor(passphrase="pässwörd ✓")) == data


def test_stanza_bodies_wrap_at_64_columns() -> None:
    for size in (0, 32, 48, 49, 96, 200):
        stanza = _Stanza(["example.com/test", "arg"], _data(size))
        encoded = stanza.encode()
        lines = encoded.split(b"\n")[1:-1]
        assert all(len(line) == 64 for line in lines[:-1]) and len(lines[-1]) < 64
        header = b"age-encryption.org/v1\n" + encoded + b"--- " + b"A" * 43 + b"\n"
        [parsed], _, mac_input = _parse_header(header)
        assert parsed.body == stanza.body and parsed.args == stanza.args
        assert mac_input == header[: header.index(b"\n---") + 4]


def test_encryptor_is_a_pipeline_stage() -> None:
    data = b"COPY public.t (id) FROM stdin;\n" + b"".join(b"%d\n" % i for i in range(200_000)) + b"\\.\n"
    stages: list[Compressor] = [make_compressor("gzip", 6), Encryptor(parse_recipients(PUBLIC))]
    out = []
    for pos in range(0, len(data), 100_000):
        piece = data[pos : pos + 100_000]
        for stage in stages:
            piece = stage.compress(piece)
        out.append(piece)
    tail = b""
    for stage in stages:
        tail = stage.compress(tail) + stage.flush()
    out.append(tail)
    decryptor = _mine()
    plain = decryptor.feed(b"".join(out))
    decryptor.finish()
    assert zlib.decompress(plain, 31) == data


# --- failures ---


def test_wrong_identity() -> None:
    error = _failure(_x25519_file(b"secret rows"), _mine(OTHER_SECRET))
    assert error.exit_code == ExitCode.CONFIG and isinstance(error, ConfigError)
    assert "no identity" in error.message.lower() and "BACKUP_ENCRYPTION_IDENTITY" in error.hint
    _assert_no_secret(error, OTHER_SECRET, SECRET)


def test_wrong_passphrase() -> None:
    ciphertext = _encrypt(b"secret rows", Encryptor(passphrase=PASSWORD, work_factor=FAST))
    error = _failure(ciphertext, Decryptor(passphrase="guess"))
    assert error.exit_code == ExitCode.CONFIG
    assert "wrong passphrase" in error.message.lower() and "BACKUP_ENCRYPTION_PASSPHRASE" in error.hint
    assert "guess" not in error.message + error.hint and PASSWORD not in error.message + error.hint


def test_key_kind_that_does_not_fit_the_file() -> None:
    scrypt_file = _encrypt(b"x", Encryptor(passphrase=PASSWORD, work_factor=FAST))
    error = _failure(scrypt_file, _mine())
    assert error.exit_code == ExitCode.CONFIG and "BACKUP_ENCRYPTION_PASSPHRASE" in error.hint
    error = _failure(_x25519_file(b"x"), Decryptor(passphrase=PASSWORD))
    assert error.exit_code == ExitCode.CONFIG and "BACKUP_ENCRYPTION_IDENTITY" in error.hint


@pytest.mark.parametrize(
    ("cut", "words"),
    [
        (lambda header: header - 20, "header"),
        (lambda header: header + 7, "before its payload"),
        (lambda header: header + 16 + SEALED_CHUNK_SIZE, "not marked final"),
        (lambda header: header + 16 + 2 * SEALED_CHUNK_SIZE, "not marked final"),
        (lambda header: header + 16 + SEALED_CHUNK_SIZE + 1000, "truncated"),
        (lambda header: header + 16 + 3 * SEALED_CHUNK_SIZE - 1, "truncated"),
    ],
)
def test_truncation(cut: Callable[[int], int], words: str) -> None:
    ciphertext = _x25519_file(_data(3 * CHUNK_SIZE))
    error = _failure(ciphertext[: cut(_header_length(ciphertext))], _mine())
    assert error.exit_code == ExitCode.VERIFY
    assert words in error.message


def test_flipped_bit_in_header() -> None:
    ciphertext = bytearray(_x25519_file(_data(1000)))
    header = _header_length(ciphertext)
    mac_char = header - 10
    ciphertext[mac_char] = ord("A") if ciphertext[mac_char] != ord("A") else ord("B")
    error = _failure(bytes(ciphertext), _mine())
    assert error.exit_code == ExitCode.VERIFY and "MAC" in error.message and "damaged" in error.message
    # A flip inside the recipient stanza makes the file key unrecoverable, which looks like a wrong key:
    # still an AgeError, and the hint says the header may be damaged.
    stanza = bytearray(_x25519_file(_data(1000)))
    stanza[40] ^= 0x01
    error = _failure(bytes(stanza), _mine())
    assert error.exit_code in (ExitCode.CONFIG, ExitCode.VERIFY)
    assert "damaged" in error.hint
    _assert_no_secret(error, SECRET)


@pytest.mark.parametrize("where", [0, 1, 2, -1])
def test_flipped_bit_in_payload(where: int) -> None:
    data = _data(3 * CHUNK_SIZE + 10)
    ciphertext = bytearray(_x25519_file(data))
    start = _header_length(ciphertext) + 16
    position = len(ciphertext) - 3 if where == -1 else start + where * SEALED_CHUNK_SIZE + 100
    ciphertext[position] ^= 0x10
    decryptor = _mine()
    released = b""
    with pytest.raises(AgeError) as caught:
        for pos in range(0, len(ciphertext), 10_000):
            released += decryptor.update(bytes(ciphertext[pos : pos + 10_000]))
        decryptor.finish()
    assert caught.value.exit_code == ExitCode.VERIFY and "damaged" in caught.value.message
    # Nothing from the damaged chunk, or after it, is ever handed out.
    assert data.startswith(released)
    assert len(released) <= (max(where, 0) if where >= 0 else 3) * CHUNK_SIZE


def test_trailing_data() -> None:
    exact = _x25519_file(_data(2 * CHUNK_SIZE))  # ends with a full-size final chunk
    error = _failure(exact + b"x", _mine())
    assert error.exit_code == ExitCode.VERIFY and "after its final chunk" in error.message
    short = _x25519_file(_data(1000))
    error = _failure(short + b"more", _mine(), pieces=[len(short)])
    assert error.exit_code == ExitCode.VERIFY and "after its final chunk" in error.message
    # Glued to a short final chunk in the same piece, the extra bytes make that chunk fail as a whole.
    error = _failure(short + b"more", _mine())
    assert error.exit_code == ExitCode.VERIFY and "after its end" in error.message


def test_empty_final_chunk_after_data_is_refused() -> None:
    # "Payload": the final chunk MUST NOT be empty unless the whole payload is, so a 64 KiB payload sealed as
    # a middle chunk plus an empty final one is invalid (and a reference implementation agrees).
    encryptor = Encryptor(parse_recipients(PUBLIC))
    ciphertext = encryptor.update(b"") + encryptor._seal(_data(CHUNK_SIZE), last=False) + encryptor._seal(b"", True)
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(ciphertext, [pyrage.x25519.Identity.from_str(SECRET)])
    for pieces in (None, [len(ciphertext) - 16]):
        error = _failure(ciphertext, _mine(), pieces)
        assert error.exit_code == ExitCode.VERIFY and "empty chunk" in error.message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"--\n-- PostgreSQL database dump\n--\n" * 10, "not age-encrypted"),
        (b"\x28\xb5\x2f\xfd" + bytes(100), "not age-encrypted"),
        (b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n", "ASCII-armored"),
        (b"age-encryption.org/v2\n-> X 1\n\n--- x\n", "version"),
        (b"age", "truncated"),
        (b"", "empty"),
    ],
)
def test_non_age_input(content: bytes, words: str) -> None:
    error = _failure(content, _mine())
    assert error.exit_code == ExitCode.VERIFY and words in error.message


def test_non_age_input_fails_without_buffering_it() -> None:
    decryptor = _mine()
    with pytest.raises(AgeError, match="not age-encrypted"):
        for _ in range(100):
            decryptor.update(b"SET statement_timeout = 0;\n" * 10_000)


def _scrypt_header(args: str, extra: str = "") -> bytes:
    salt = base64.b64encode(bytes(16)).decode().rstrip("=")
    body = base64.b64encode(bytes(32)).decode().rstrip("=")
    lines = ["age-encryption.org/v1", f"-> scrypt {salt} {args}", body, *([extra] if extra else [])]
    return ("\n".join(lines) + "\n--- " + "A" * 43 + "\n").encode() + bytes(64)


def test_scrypt_stanza_must_be_alone() -> None:
    share = base64.b64encode(bytes(range(1, 33))).decode().rstrip("=")
    body = base64.b64encode(bytes(32)).decode().rstrip("=")
    error = _failure(_scrypt_header("10", f"-> X25519 {share}\n{body}"), Decryptor(passphrase=PASSWORD))
    assert error.exit_code == ExitCode.VERIFY and "scrypt stanza mixed" in error.message
    # The same with a real file: our scrypt header plus a pyrage X25519 stanza.
    ours = _encrypt(b"x", Encryptor(passphrase=PASSWORD, work_factor=FAST))
    theirs = pyrage.encrypt(b"x", [pyrage.x25519.Recipient.from_str(PUBLIC)])
    stanza = theirs[theirs.index(b"-> ") : theirs.index(b"\n---") + 1]
    # Exactly one newline off: a body that fills its last line ends with an empty line that must stay.
    mixed = ours.replace(b"\n---", b"\n" + stanza[:-1] + b"\n---", 1)
    for decryptor in (Decryptor(passphrase=PASSWORD), _mine()):
        error = _failure(mixed, decryptor)
        assert error.exit_code == ExitCode.VERIFY and "scrypt" in error.message


def test_absurd_work_factor_is_refused_before_any_work() -> None:
    started = time.monotonic()
    error = _failure(_scrypt_header("64"), Decryptor(passphrase=PASSWORD))
    assert time.monotonic() - started < 1
    assert error.exit_code == ExitCode.VERIFY and "2^64" in error.message and "limit" in error.message
    assert PASSWORD not in error.message + error.hint
    error = _failure(_scrypt_header("23"), Decryptor(passphrase=PASSWORD))
    assert "2^23" in error.message
    for malformed in ("018", "0", "-1", "18 19"):
        error = _failure(_scrypt_header(malformed), Decryptor(passphrase=PASSWORD))
        assert error.exit_code == ExitCode.VERIFY and "malformed" in error.message


def test_non_canonical_base64_is_refused() -> None:
    ciphertext = _x25519_file(b"x")
    mac_end = _header_length(ciphertext) - 1
    last = ciphertext[mac_end - 1 : mac_end]
    # The MAC's 43rd character carries 2 padding bits: a different character with the same top bits decodes
    # to the same MAC, and must be refused rather than accepted.
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = alphabet.index(last)
    twin = alphabet[value ^ 0x01 : (value ^ 0x01) + 1]
    error = _failure(ciphertext[: mac_end - 1] + twin + ciphertext[mac_end:], _mine())
    assert error.exit_code == ExitCode.VERIFY and "malformed" in error.message


def test_decryptor_refuses_reuse_after_an_error() -> None:
    decryptor = _mine()
    with pytest.raises(AgeError):
        decryptor.update(b"not age at all, not at all")
    with pytest.raises(RuntimeError):
        decryptor.update(b"age-encryption.org/v1\n")


# --- memory ---


def test_memory_stays_bounded_over_64_mib() -> None:
    piece_size = 1 << 20
    base = _data(piece_size)
    encryptor = Encryptor(parse_recipients(PUBLIC))
    decryptor = _mine()
    digest_in, digest_out = hashlib.sha256(), hashlib.sha256()
    largest_ciphertext = largest_plaintext = 0
    tracemalloc.start()
    try:
        for index in range(64):
            piece = index.to_bytes(4, "big") + base[4:]
            digest_in.update(piece)
            ciphertext = encryptor.update(piece)
            largest_ciphertext = max(largest_ciphertext, len(ciphertext))
            plaintext = decryptor.update(ciphertext)
            largest_plaintext = max(largest_plaintext, len(plaintext))
            digest_out.update(plaintext)
            del piece, ciphertext, plaintext
        tail = decryptor.update(encryptor.finish())
        decryptor.finish()
        digest_out.update(tail)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest_in.digest() == digest_out.digest()
    assert largest_ciphertext <= piece_size + 2 * SEALED_CHUNK_SIZE
    assert largest_plaintext <= piece_size + 2 * CHUNK_SIZE
    # One piece in each direction, a chunk buffered on each side, and the joined outputs: a few MiB at most,
    # never anything growing with the 64 MiB that went through.
    assert peak < 8 * piece_size, f"peak {peak / piece_size:.1f} MiB"


# --- the age command-line tool ---


@pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed (apt-get install age)")
def test_interop_with_the_age_cli(tmp_path: Path) -> None:
    data = _data(CHUNK_SIZE * 2 + 77)
    keygen = shutil.which("age-keygen")
    if keygen is not None:
        key_file = tmp_path / "key.txt"
        subprocess.run([keygen, "-o", str(key_file)], check=True, capture_output=True)
        text = key_file.read_text()
        identities = parse_identities(text)  # the real file: with its "# created" and "# public key" comments
        recipient = str(identities[0].recipient)
        assert f"# public key: {recipient}" in text
    else:
        key_file = tmp_path / "key.txt"
        key_file.write_text(SECRET + "\n")
        identities, recipient = parse_identities(SECRET), PUBLIC
    ours = _encrypt(data, Encryptor(parse_recipients(recipient)))
    decrypted = subprocess.run(["age", "-d", "-i", str(key_file)], input=ours, capture_output=True, check=True)
    assert decrypted.stdout == data
    theirs = subprocess.run(["age", "-e", "-r", recipient], input=data, capture_output=True, check=True).stdout
    assert _decrypt(theirs, Decryptor(identities)) == data
    armored = subprocess.run(["age", "-e", "-a", "-r", recipient], input=data, capture_output=True, check=True)
    assert "ASCII-armored" in _failure(armored.stdout, Decryptor(identities)).message
