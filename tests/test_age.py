"""age encryption through pyrage: the keys chrono-ci reads, streaming both ways, every failure a file can bring,
bounded memory, and interoperability with the age CLI (Debian's `age`) and with SSH keys (ssh-keygen)."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyrage
import pytest

from chrono_ci.crypto.keys import load_identities, load_recipients, parse_identities, parse_recipients
from chrono_ci.crypto.streams import CHANNEL_SIZE, Decryption, EncryptingStage
from chrono_ci.errors import AgeError, AgeKeyError, ConfigError, ExitCode, VerificationFailed

CHUNK = 64 * 1024  # age's payload chunk
SEALED = CHUNK + 16
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3_000_000]

_IDENTITY = pyrage.x25519.Identity.generate()
SECRET, PUBLIC = str(_IDENTITY), str(_IDENTITY.to_public())
_OTHER = pyrage.x25519.Identity.generate()
OTHER_SECRET = str(_OTHER)

needs_age_cli = pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is missing (apt-get install age)")
needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")


def _data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _pieces(data: bytes, seed: int = 0) -> Iterator[bytes]:
    """Pieces from 1 byte to 300 KiB, so that every chunk boundary is crossed every way."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        size = rng.choice([1, rng.randint(1, 100), rng.randint(1, 300 * 1024)])
        yield data[pos : pos + size]
        pos += size


def encrypt(data: bytes, recipients: str = PUBLIC) -> bytes:
    stage = EncryptingStage(parse_recipients(recipients))
    return b"".join(stage.compress(piece) for piece in _pieces(data)) + stage.flush()


class Source:
    """A non-seekable reader that hands out the file in uneven pieces, never more than asked for."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self.pieces = _pieces(data, seed)
        self.left = b""

    def read(self, size: int = -1, /) -> bytes:
        if not self.left:
            self.left = next(self.pieces, b"")
        size = len(self.left) if size < 0 else size
        out, self.left = self.left[:size], self.left[size:]
        return out


def decrypt(ciphertext: bytes, secret: str = SECRET) -> bytes:
    reader = Decryption(parse_identities(secret)).open(Source(ciphertext))
    out = []
    while chunk := reader.read(random.randint(1, 200_000)):
        out.append(chunk)
    return b"".join(out)


def failure(ciphertext: bytes, secret: str = SECRET) -> AgeError:
    with pytest.raises(AgeError) as caught:
        decrypt(ciphertext, secret)
    for key in (SECRET, OTHER_SECRET):
        assert key not in caught.value.message + caught.value.hint
    return caught.value


def header_length(ciphertext: bytes) -> int:
    return ciphertext.index(b"\n---") + len(b"\n--- ") + 43 + 1


# --- keys ---


def test_age_recipients_by_comma_space_or_line_and_duplicates_dropped() -> None:
    other = str(_OTHER.to_public())
    assert len(parse_recipients(f"{PUBLIC}, {other}\n{PUBLIC}")) == 2
    assert len(parse_recipients(f"# the team\n\n{PUBLIC} {other}\n")) == 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (PUBLIC[:-1] + ("q" if PUBLIC[-1] != "q" else "p"), "does not parse"),
        ("age1pq1" + "q" * 60, "post-quantum"),
        ("age1yubikey1" + "q" * 50, "plugin"),
        ("ecdsa-sha2-nistp256 AAAAE2VjZHNh me@host", "only ssh-ed25519 and ssh-rsa"),
        ("hello", "neither an age1... key nor an SSH public key"),
    ],
    # The first key is made at import: ids by the expected words, so that every test worker collects the same.
    ids=["bad-checksum", "post-quantum", "plugin", "ecdsa", "not-a-key"],
)
def test_a_recipient_that_cannot_be_used_is_named_by_its_line(text: str, words: str) -> None:
    with pytest.raises(AgeKeyError) as caught:
        parse_recipients(f"{PUBLIC}\n{text}")
    assert caught.value.exit_code == ExitCode.CONFIG and words in caught.value.message
    assert "line 2" in caught.value.message
    with pytest.raises(AgeKeyError, match="holds no recipient"):
        parse_recipients("# only a comment\n")


def test_a_secret_key_among_recipients_is_refused_without_being_echoed() -> None:
    with pytest.raises(AgeKeyError) as caught:
        parse_recipients(f"{PUBLIC}, {SECRET}")
    assert "secret key" in caught.value.message and SECRET[15:] not in caught.value.message + caught.value.hint


def test_identity_lines_are_never_echoed() -> None:
    typo = SECRET[:-3] + "qqq"
    with pytest.raises(AgeKeyError) as caught:
        parse_identities(f"# created: today\n{typo}\n")
    assert "line 2" in caught.value.message and typo[15:] not in caught.value.message + caught.value.hint
    with pytest.raises(AgeKeyError, match="plugin and post-quantum"):
        parse_identities("AGE-PLUGIN-YUBIKEY-1QQQQQQ")
    with pytest.raises(AgeKeyError, match="holds no identity"):
        parse_identities("# nothing\n")


def test_keys_inline_or_from_a_file(tmp_path: Path) -> None:
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(f"# backups\n{PUBLIC}\n")
    assert len(load_recipients(str(recipients))) == 1
    identity = tmp_path / "key.txt"
    identity.write_text(f"# public key: {PUBLIC}\n{SECRET}\n")
    identities, text = load_identities(str(identity))
    assert len(identities) == 1 and SECRET in text
    assert decrypt(encrypt(b"rows"), identity.read_text()) == b"rows"
    with pytest.raises(ConfigError, match="neither keys nor a readable file"):
        load_identities(str(tmp_path / "missing"))


# --- streaming ---


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_every_chunk_boundary_and_pyrage_agrees(size: int) -> None:
    data = _data(size)
    ciphertext = encrypt(data)
    assert ciphertext.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert decrypt(ciphertext) == data
    assert pyrage.decrypt(ciphertext, [_IDENTITY]) == data
    assert decrypt(pyrage.encrypt(data, [_IDENTITY.to_public()])) == data


def test_several_recipients_each_decrypt() -> None:
    ciphertext = encrypt(b"rows", f"{PUBLIC},{_OTHER.to_public()}")
    assert decrypt(ciphertext, SECRET) == decrypt(ciphertext, OTHER_SECRET) == b"rows"


def test_an_error_of_the_source_reaches_the_reader_as_it_was() -> None:
    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def read(self, size: int = -1, /) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise VerificationFailed("the stored object changed while it was read")
            return encrypt(_data(300_000))[(self.calls - 1) * 1000 : self.calls * 1000]

    reader = Decryption(parse_identities(SECRET)).open(Failing())
    with pytest.raises(VerificationFailed, match="changed while it was read"):
        while reader.read():
            pass


def test_giving_up_part_way_stops_the_threads() -> None:
    before = threading.active_count()
    reader = Decryption(parse_identities(SECRET)).open(Source(encrypt(_data(8 * CHANNEL_SIZE))))
    assert reader.read(10)
    reader.close()
    stage = EncryptingStage(parse_recipients(PUBLIC))
    stage.compress(_data(CHANNEL_SIZE * 3))
    stage.close()
    assert threading.active_count() == before


def test_memory_stays_bounded_over_256_mib() -> None:
    """256 MiB encrypted and decrypted in one stream, in a process of its own whose peak memory is measured."""
    script = textwrap.dedent(
        f"""
        import hashlib
        from chrono_ci.crypto.keys import parse_identities, parse_recipients
        from chrono_ci.crypto.streams import Decryption, EncryptingStage

        class Encrypted:
            def __init__(self):
                self.stage = EncryptingStage(parse_recipients({PUBLIC!r}))
                self.sent = 0
                self.done = False
                self.digest = hashlib.sha256()
            def read(self, size=-1):
                out = b""
                while not out and not self.done:
                    if self.sent < 256:
                        piece = self.sent.to_bytes(4, "big") * (1 << 18)
                        self.digest.update(piece)
                        out = self.stage.compress(piece)
                        self.sent += 1
                    else:
                        out = self.stage.flush()
                        self.done = True
                return out

        source = Encrypted()
        reader = Decryption(parse_identities({SECRET!r})).open(source)
        digest = hashlib.sha256()
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
        assert digest.digest() == source.digest.digest() and source.sent == 256
        # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would count the test runner that forked us.
        status = open("/proc/self/status").read()
        print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True)
    peak_mib = int(done.stdout.split()[-1])
    assert peak_mib < 64, f"peak {peak_mib} MiB for 256 MiB through"


# --- failures ---


def test_wrong_identity() -> None:
    error = failure(encrypt(b"rows"), OTHER_SECRET)
    assert isinstance(error, AgeKeyError) and error.exit_code == ExitCode.CONFIG
    assert "No identity" in error.message and "damaged" in error.hint


@pytest.mark.parametrize(
    "cut",
    [
        lambda header: header - 20,
        lambda header: header + 7,
        lambda header: header + 16 + SEALED,
        lambda header: header + 16 + SEALED + 1000,
        lambda header: header + 16 + 3 * SEALED - 1,
    ],
)
def test_truncation_is_refused(cut: Callable[[int], int]) -> None:
    data = _data(3 * CHUNK)
    ciphertext = encrypt(data)
    error = failure(ciphertext[: cut(header_length(ciphertext))])
    assert error.exit_code == ExitCode.VERIFY and "truncated" in error.message


def test_a_flipped_byte_in_the_header_is_refused() -> None:
    ciphertext = bytearray(encrypt(_data(1000)))
    mac = header_length(ciphertext) - 10
    ciphertext[mac] = ord("A") if ciphertext[mac] != ord("A") else ord("B")
    error = failure(bytes(ciphertext))
    assert error.exit_code == ExitCode.VERIFY and "MAC" in error.message
    # A flip in the recipient stanza makes the file key unrecoverable, which looks like a wrong key: the hint
    # says the header may be damaged.
    stanza = bytearray(encrypt(_data(1000)))
    stanza[40] ^= 0x01
    assert "damaged" in failure(bytes(stanza)).hint


@pytest.mark.parametrize("where", [0, 1, 2, -1])
def test_a_flipped_byte_in_the_payload_is_refused_and_nothing_after_it_comes_out(where: int) -> None:
    data = _data(3 * CHUNK + 10)
    ciphertext = bytearray(encrypt(data))
    start = header_length(ciphertext) + 16
    position = len(ciphertext) - 3 if where == -1 else start + where * SEALED + 100
    ciphertext[position] ^= 0x10
    reader = Decryption(parse_identities(SECRET)).open(Source(bytes(ciphertext)))
    released = b""
    with pytest.raises(AgeError) as caught:
        while chunk := reader.read(1000):
            released += chunk
    assert caught.value.exit_code == ExitCode.VERIFY and "fails authentication" in caught.value.message
    assert data.startswith(released)
    assert len(released) <= (where if where >= 0 else 3) * CHUNK


def test_data_after_the_end_is_refused() -> None:
    for data in (_data(2 * CHUNK), _data(1000)):
        error = failure(encrypt(data) + b"x")
        assert error.exit_code == ExitCode.VERIFY and "after its end" in error.message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"--\n-- PostgreSQL database dump\n--\n" * 10, "not age-encrypted"),
        (b"\x28\xb5\x2f\xfd" + bytes(100), "not age-encrypted"),
        (b"age-encryption.org/v2\n-> X 1\n\n--- x\n", "version"),
        (b"age", "truncated"),
        (b"", "empty"),
    ],
)
def test_what_is_not_an_age_file_is_named(content: bytes, words: str) -> None:
    error = failure(content)
    assert error.exit_code == ExitCode.VERIFY and words in error.message


def test_a_passphrase_archive_says_how_to_open_it() -> None:
    error = failure(pyrage.passphrase.encrypt(b"rows", "an old passphrase"))
    assert isinstance(error, AgeKeyError) and "passphrase" in error.message and "age -d" in error.hint


# --- SSH keys and the age CLI ---


def ssh_key(folder: Path, kind: str) -> tuple[Path, str]:
    path = folder / f"id_{kind}"
    extra = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"{kind}@laptop", "-f", str(path)], check=True
    )
    return path, path.with_suffix(".pub").read_text().strip()


@needs_ssh_keygen
def test_ssh_recipients_from_a_github_keys_file_and_ssh_identities(tmp_path: Path) -> None:
    ed25519, ed25519_public = ssh_key(tmp_path, "ed25519")
    rsa, rsa_public = ssh_key(tmp_path, "rsa")
    # https://github.com/USER.keys: one key per line, without the comment.
    keys_file = tmp_path / "octocat.keys"
    keys_file.write_text(f"{' '.join(ed25519_public.split()[:2])}\n{' '.join(rsa_public.split()[:2])}\n")
    recipients = load_recipients(str(keys_file))
    assert len(recipients) == 2
    stage = EncryptingStage(recipients)
    data = _data(200_000)
    ciphertext = stage.compress(data) + stage.flush()
    assert ciphertext.count(b"\n-> ssh-ed25519 ") == 1 and ciphertext.count(b"\n-> ssh-rsa ") == 1
    for key in (ed25519, rsa):
        identities, _ = load_identities(str(key))
        assert decrypt(ciphertext, key.read_text()) == data and len(identities) == 1
    # A public key with its comment, as in ~/.ssh/id_ed25519.pub, is a recipient too.
    assert decrypt(encrypt(b"rows", ed25519_public), ed25519.read_text()) == b"rows"


@needs_ssh_keygen
def test_ssh_keys_that_cannot_be_identities_are_explained(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked)], check=True)
    with pytest.raises(AgeKeyError, match="protected by a passphrase") as caught:
        load_identities(str(locked))
    assert "ssh-keygen -p" in caught.value.hint
    ecdsa, ecdsa_public = ssh_key(tmp_path, "ecdsa")
    with pytest.raises(AgeKeyError, match="cannot be an age identity"):
        load_identities(str(ecdsa))
    with pytest.raises(AgeKeyError, match="only ssh-ed25519 and ssh-rsa"):
        parse_recipients(ecdsa_public)


@needs_age_cli
def test_the_age_cli_reads_ours_and_we_read_its(tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    identities, text = load_identities(str(key_file))  # the real file, with its "# created" comment
    assert len(identities) == 1
    public = next(line.split(": ")[1] for line in text.splitlines() if line.startswith("# public key: "))
    data = _data(2 * CHUNK + 77)
    ours = encrypt(data, public)
    done = subprocess.run(["age", "-d", "-i", str(key_file)], input=ours, capture_output=True, check=True)
    assert done.stdout == data
    for armor in ([], ["-a"]):
        theirs = subprocess.run(["age", "-e", *armor, "-r", public], input=data, capture_output=True, check=True)
        assert decrypt(theirs.stdout, text) == data
    cut = subprocess.run(["age", "-e", "-r", public], input=data, capture_output=True, check=True).stdout[:-1]
    assert "truncated" in failure(cut, text).message


@needs_age_cli
@needs_ssh_keygen
def test_the_age_cli_decrypts_ours_with_an_ssh_key_and_we_decrypt_its(tmp_path: Path) -> None:
    ed25519, public = ssh_key(tmp_path, "ed25519")
    data = _data(CHUNK * 3)
    done = subprocess.run(["age", "-d", "-i", str(ed25519)], input=encrypt(data, public), capture_output=True)
    assert done.returncode == 0 and done.stdout == data, done.stderr
    keys_file = tmp_path / "recipients"
    keys_file.write_text(public + "\n")
    theirs = subprocess.run(["age", "-e", "-R", str(keys_file)], input=data, capture_output=True, check=True)
    assert decrypt(theirs.stdout, ed25519.read_text()) == data
