"""Encryption at rest with age: archives are encrypted in the stream, before they touch disk or any upload."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pyrage
import pytest
import zstandard

from chrono_ci.crypto.age import generate_identity
from tests.fixtures.postgres import CliResult, PgServer
from tests.fixtures.seaweedfs_server import SeaweedFS
from tests.sample import EXPECTED_TABLES, SAMPLE_SQL
from tests.test_recovery import entries, folder_state, state
from tests.test_upload import objects, s3_env

Run = Callable[..., CliResult]
PASSPHRASE = "correct horse: battery/staple % é"


@pytest.fixture
def sample_url(pg18: PgServer, make_database: Callable[..., str]) -> str:
    return make_database(pg18, SAMPLE_SQL)


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_identity()


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


def test_passphrase_round_trip_and_a_wrong_one_touches_nothing(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_ENCRYPTION_PASSPHRASE": PASSPHRASE}
    result = run_cli("backup", "postgres", env=env)
    assert result.code == 0, result.output
    (entry,) = entries(folder)
    path = folder / str(entry["file"])
    assert entry["encryption"] == "age-scrypt" and entry["verified"]["ok"] is True  # type: ignore[index]
    assert pyrage.passphrase.decrypt(path.read_bytes(), PASSPHRASE)
    assert run_cli("backup", "test", env=env).code == 0
    before, files = state(sample_url), folder_state(folder)
    wrong = run_cli("recovery", "restore", path.name, "--yes", env={**env, "BACKUP_ENCRYPTION_PASSPHRASE": "not it"})
    assert wrong.code == 2, wrong.output
    assert "passphrase" in wrong.output.lower() and "hint:" in wrong.output
    assert state(sample_url) == before and folder_state(folder) == files
    for output in (result.output, wrong.output):
        assert PASSPHRASE not in output and "not it" not in output


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BACKUP_ENCRYPTION_PASSPHRASE": ""}, "BACKUP_ENCRYPTION_PASSPHRASE is set but empty"),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "  "}, "BACKUP_ENCRYPTION_RECIPIENTS is set but empty"),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "age1notakey"}, "BACKUP_ENCRYPTION_RECIPIENTS"),
        ({"BACKUP_ENCRYPTION_RECIPIENTS": "x", "BACKUP_ENCRYPTION_PASSPHRASE": "y"}, "both set"),
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


def test_a_damaged_encrypted_archive_is_detected(run_cli: Run, sample_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": sample_url, "BACKUP_DIR": str(folder), "BACKUP_ENCRYPTION_PASSPHRASE": PASSPHRASE}
    assert run_cli("backup", "postgres", env=env).code == 0
    path = folder / str(entries(folder)[0]["file"])
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    result = run_cli("recovery", "test", path.name, env=env)
    assert result.code == 7, result.output
    assert "FAIL" in result.stdout
