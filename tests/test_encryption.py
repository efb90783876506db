"""Encryption at rest with age: archives are encrypted in the stream, before they touch disk or any upload."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pyrage
import pytest
import zstandard

from tests.fixtures.postgres import CliResult, PgServer
from tests.fixtures.seaweedfs_server import SeaweedFS
from tests.sample import EXPECTED_TABLES, SAMPLE_SQL
from tests.test_recovery import entries
from tests.test_upload import objects, s3_env

Run = Callable[..., CliResult]
PASSPHRASE = "correct horse: battery/staple % é"
needs_age_cli = pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is missing (apt-get install age)")


@pytest.fixture
def sample_url(pg18: PgServer, make_database: Callable[..., str]) -> str:
    return make_database(pg18, SAMPLE_SQL)


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def test_recipients_encrypt_before_disk_and_a_key_decrypts(
    run_cli: Run, sample_url: str, keypair: tuple[str, str], tmp_path: Path
) -> None:
    secret, public = keypair
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_ENCRYPTION_RECIPIENTS": public}
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    path = folder / str(entry["file"])
    assert path.name.endswith(".sql.zst.age") and entry["encryption"] == "age-x25519"
    data = path.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    # Standard age: another implementation decrypts it, and zstd then gives the dump.
    sql = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress(pyrage.decrypt(data, [pyrage.x25519.Identity.from_str(secret)]))
    )
    assert b"-- PostgreSQL database dump complete" in sql
    # Public keys alone cannot read it back: the check proves the checksum and says so.
    assert "decryption: not checked" in result.stdout or "not checked" in result.stdout

    no_key = run_cli("recovery", "test", path.name, env=env)
    assert no_key.code == 2 and "no key to decrypt" in no_key.output and "BACKUP_ENCRYPTION_IDENTITY" in no_key.output
    with_key = run_cli("recovery", "test", path.name, "--restore", env={**env, "BACKUP_ENCRYPTION_IDENTITY": secret})
    assert with_key.code == 0, with_key.output
    assert secret not in with_key.output


def test_identity_from_a_file_and_a_full_restore(
    run_cli: Run, sample_url: str, keypair: tuple[str, str], tmp_path: Path
) -> None:
    secret, public = keypair
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: today\n# public key: {public}\n{secret}\n")
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": sample_url,
        "BACKUP_DIR": str(folder),
        "BACKUP_ENCRYPTION_RECIPIENTS": public,
        "BACKUP_ENCRYPTION_IDENTITY": str(key_file),
    }
    result = run_cli("backup", "postgres", "--verify", "restore", env=env)
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    assert entry["verified"]["ok"] is True  # type: ignore[index]
    with psycopg.connect(sample_url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders")
    restored = run_cli("recovery", "restore", str(entry["file"]), "--yes", env=env)
    assert restored.code == 0, restored.output
    with psycopg.connect(sample_url) as conn:
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone() == (EXPECTED_TABLES["app.orders"],)
    # The safety backup made before the restore is encrypted too.
    safety = [e for e in entries(folder) if e["series"] == "safety"]
    assert str(safety[0]["file"]).endswith(".age")


def test_a_passphrase_is_refused_with_the_way_to_a_key_pair(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    for value in (PASSPHRASE, ""):
        env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_ENCRYPTION_PASSPHRASE": value}
        result = run_cli("backup", "postgres", env=env)
        assert result.code == 2, result.output
        assert "BACKUP_ENCRYPTION_PASSPHRASE is no longer supported" in result.output
        assert "age-keygen" in result.output and "Moving from a passphrase" in result.output
        assert PASSPHRASE not in result.output
        assert not folder.exists()  # nothing backed up in the clear


def test_a_passphrase_archive_of_an_older_version_says_how_to_open_it(
    run_cli: Run, sample_url: str, keypair: tuple[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder)}
    assert run_cli("backup", "postgres", env=env).code == 0
    plain = folder / str(entries(folder)[0]["file"])
    old = tmp_path / f"{plain.name}.age"
    old.write_bytes(pyrage.passphrase.encrypt(plain.read_bytes(), PASSPHRASE))
    result = run_cli("recovery", "test", str(old), env={**env, "BACKUP_ENCRYPTION_IDENTITY": keypair[0]})
    assert result.code == 2, result.output
    assert "encrypted with a passphrase" in result.output and "age -d" in result.output


@needs_age_cli
def test_an_archive_the_age_cli_encrypted_restores(
    run_cli: Run, sample_url: str, keypair: tuple[str, str], tmp_path: Path
) -> None:
    secret, public = keypair
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_ENCRYPTION_IDENTITY": secret}
    assert run_cli("backup", "postgres", env={k: v for k, v in env.items() if "ENCRYPTION" not in k}).code == 0
    plain = folder / str(entries(folder)[0]["file"])
    theirs = folder / f"{plain.name}.age"
    subprocess.run(["age", "-e", "-r", public, "-o", str(theirs), str(plain)], check=True)
    with psycopg.connect(sample_url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders")
    restored = run_cli("recovery", "restore", theirs.name, "--yes", "--allow-unlisted", env=env)
    assert restored.code == 0, restored.output
    with psycopg.connect(sample_url) as conn:
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone() == (EXPECTED_TABLES["app.orders"],)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
def test_ssh_keys_from_a_github_keys_file_encrypt_and_an_ssh_key_restores(
    run_cli: Run, sample_url: str, keypair: tuple[str, str], tmp_path: Path
) -> None:
    keys = []
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"])):
        path = tmp_path / f"id_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(path)], check=True)
        keys.append(path)
    # The format of https://github.com/USER.keys: one public key per line, no comment.
    keys_file = tmp_path / "team.keys"
    keys_file.write_text("".join(" ".join(k.with_suffix(".pub").read_text().split()[:2]) + "\n" for k in keys))
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_ENCRYPTION_RECIPIENTS": str(keys_file)}
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    assert entry["encryption"] == "age-ssh"
    path = folder / str(entry["file"])
    if shutil.which("age") is not None:
        # The age project's own tool opens it with either member's SSH key.
        for key in keys:
            done = subprocess.run(["age", "-d", "-i", str(key), str(path)], capture_output=True, check=True)
            assert b"-- PostgreSQL database dump complete" in zstandard.ZstdDecompressor().decompressobj().decompress(
                done.stdout
            )
    with psycopg.connect(sample_url, autocommit=True) as conn:
        conn.execute("DELETE FROM app.orders")
    key_text = keys[1].read_text()
    restored = run_cli("recovery", "restore", path.name, "--yes", env={**env, "BACKUP_ENCRYPTION_IDENTITY": key_text})
    assert restored.code == 0, restored.output
    for line in key_text.splitlines()[1:-1]:
        assert line not in restored.output
    with psycopg.connect(sample_url) as conn:
        assert conn.execute("SELECT count(*) FROM app.orders").fetchone() == (EXPECTED_TABLES["app.orders"],)
    # Mixed with an age key, the record says both.
    mixed = run_cli(
        "backup", "postgres", env={**env, "BACKUP_ENCRYPTION_RECIPIENTS": f"{keypair[1]}\n{keys_file.read_text()}"}
    )
    assert mixed.code == 0, mixed.output
    assert entries(folder)[-1]["encryption"] == "age-ssh+x25519"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BACKUP_ENCRYPTION_IDENTITY": ""}, "BACKUP_ENCRYPTION_IDENTITY is set but empty"),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "  "}, "BACKUP_ENCRYPTION_RECIPIENTS is set but empty"),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "age1notakey"}, "line 1 holds 'age1notakey'..."),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "ssh-dss AAAAB3NzaC1kc3M"}, "only ssh-ed25519 and ssh-rsa"),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "/no/such/keys"}, "neither keys nor a readable file"),
        ({"BACKUP_ENCRYPTION_IDENTITY": "/no/such/key"}, "BACKUP_ENCRYPTION_IDENTITY"),
    ],
)
def test_encryption_that_cannot_be_honoured_is_refused(
    run_cli: Run, sample_url: str, tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    folder = tmp_path / "backups"
    result = run_cli("backup", "postgres", env={"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), **env})
    assert result.code == 2, result.output
    assert needle in result.output and "hint:" in result.output
    assert not folder.exists()


def test_restore_verification_with_public_keys_only_is_refused(
    run_cli: Run, sample_url: str, keypair: tuple[str, str]
) -> None:
    result = run_cli(
        "backup",
        "postgres",
        "--verify",
        "restore",
        env={"DATABASE_URL": sample_url, "BACKUP_ENCRYPTION_RECIPIENTS": keypair[1]},
    )
    assert result.code == 2 and "BACKUP_ENCRYPTION_IDENTITY" in result.output


def test_uploads_carry_the_encrypted_bytes(
    run_cli: Run, sample_url: str, keypair: tuple[str, str], seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": sample_url,
        "BACKUP_DIR": str(folder),
        "BACKUP_ENCRYPTION_RECIPIENTS": keypair[1],
        **s3_env(seaweedfs, s3_bucket),
    }
    result = run_cli("--json", "backup", "postgres", env=env)
    assert result.code == 0, result.output
    entry = json.loads(result.stdout)["backups"][0]
    stored = objects(seaweedfs, s3_bucket)[entry["file"]]
    assert stored.startswith(b"age-encryption.org/v1\n") and stored == (folder / entry["file"]).read_bytes()


def test_a_damaged_or_cut_encrypted_archive_is_detected(
    run_cli: Run, sample_url: str, keypair: tuple[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": sample_url,
        "BACKUP_DIR": str(folder),
        "BACKUP_ENCRYPTION_RECIPIENTS": keypair[1],
        "BACKUP_ENCRYPTION_IDENTITY": keypair[0],
    }
    assert run_cli("backup", "postgres", env=env).code == 0
    path = folder / str(entries(folder)[0]["file"])
    good = path.read_bytes()
    for damaged in (good[:-100] + bytes([good[-100] ^ 0x01]) + good[-99:], good[: len(good) // 2]):
        path.write_bytes(damaged)
        result = run_cli("recovery", "test", path.name, env=env)
        assert result.code == 7, result.output
        assert "FAIL" in result.stdout
