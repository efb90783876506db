"""Secrets stay secret: every command, success and failure, with a password full of special characters, an S3
secret, an age identity (a secret key) and a passphrase that is refused; none of them may appear in output,
files, Action outputs or the step summary, nor in the argv of any process on the machine while the commands
run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pyrage
import pytest

from chrono_ci.source.embedded import free_port
from tests.fixtures.postgres import TEST_PASSWORD, CliResult, PgServer
from tests.fixtures.seaweedfs_server import SeaweedFS
from tests.sample import SAMPLE_SQL
from tests.test_action import ActionRun, action_yml, run_action, runner  # noqa: F401 - fixtures used here
from tests.test_recovery import entries
from tests.test_upload import s3_env

Run = Callable[..., CliResult]
PASSPHRASE = "pässphrase: s3cr3t/%#?&'\" end"  # no longer supported: refused, and never repeated
_IDENTITY = pyrage.x25519.Identity.generate()
IDENTITY, RECIPIENT = str(_IDENTITY), str(_IDENTITY.to_public())
WRONG_IDENTITY = str(pyrage.x25519.Identity.generate())
SIGNING_KEY = "signing-k3y: s3cr3t/%#?&'\" and long enough to be accepted"


class ArgvWatcher:
    """Reads every process's argv from /proc while the commands run."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.leaks: list[str] = []
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    continue
                if "pg_dump" in argv or "psql" in argv or "chrono_ci" in argv:
                    self.seen += 1
                for secret in self.secrets:
                    if secret in argv:
                        self.leaks.append(argv)
            time.sleep(0.005)

    def __enter__(self) -> ArgvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def forms(secret: str) -> list[str]:
    return sorted({secret, quote(secret, safe=""), quote(secret)})


@pytest.fixture
def secrets(seaweedfs: SeaweedFS) -> list[str]:
    return [*forms(TEST_PASSWORD), *forms(PASSPHRASE), *forms(SIGNING_KEY), IDENTITY, seaweedfs.secret_key]


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret appears in {where}"


def all_files(folder: Path) -> Iterator[tuple[Path, str]]:
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.endswith((".zst", ".gz", ".sql", ".age")):
            yield path, path.read_text(errors="replace")


def test_no_secret_leaks_anywhere(
    run_cli: Run,
    run_action: Callable[..., ActionRun],  # noqa: F811
    pg18: PgServer,
    make_database: Callable[..., str],
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    secrets: list[str],
    tmp_path: Path,
) -> None:
    url = make_database(pg18, SAMPLE_SQL)
    folder = tmp_path / "backups"
    env = {
        "DATABASE_URL": url,
        "BACKUP_DIR": str(folder),
        "BACKUP_ENCRYPTION_RECIPIENTS": RECIPIENT,
        "BACKUP_ENCRYPTION_IDENTITY": IDENTITY,
        "BACKUP_SIGNING_KEY": SIGNING_KEY,
        **s3_env(seaweedfs, s3_bucket),
    }
    wrong_password = url.replace(quote(TEST_PASSWORD, safe=""), quote("wrong-" + TEST_PASSWORD, safe=""))
    refused = url.replace(f":{url.split('@')[1].split(':')[1].split('/')[0]}/", f":{free_port()}/")
    results: list[tuple[str, CliResult]] = []
    with ArgvWatcher(secrets + forms("wrong-" + TEST_PASSWORD) + ["x" + SIGNING_KEY, WRONG_IDENTITY]) as watcher:

        def run(label: str, *args: str, **extra: str) -> CliResult:
            result = run_cli(*args, env={**env, **extra})
            results.append((label, result))
            return result

        assert run("backup", "backup", "postgres", "--verify", "restore").code == 0
        name = str(entries(folder)[-1]["file"])
        assert run("backup test", "backup", "test").code == 0
        assert run("list", "recovery", "list").code == 0
        assert run("list s3", "--json", "recovery", "list", "--from", "s3").code == 0
        assert run("test", "recovery", "test", name, "--restore").code == 0
        assert run("dry-run", "recovery", "restore", name, "--dry-run").code == 0
        assert run("restore", "recovery", "restore", name, "--yes").code == 0
        assert run("status", "status", "--max-age", "1h").code == 0
        assert run("prune", "prune", "--dry-run").code == 0
        # Failures: each must say what went wrong without the secret in it.
        assert run("wrong password", "backup", "postgres", DATABASE_URL=wrong_password).code == 3
        assert run("wrong identity", "recovery", "test", name, BACKUP_ENCRYPTION_IDENTITY=WRONG_IDENTITY).code == 2
        assert run("passphrase", "backup", "postgres", BACKUP_ENCRYPTION_PASSPHRASE=PASSPHRASE).code == 2
        assert run("wrong s3 secret", "backup", "postgres", AWS_SECRET_ACCESS_KEY="x" + seaweedfs.secret_key).code == 5
        assert run("no confirmation", "recovery", "restore", name).code == 9
        assert run("refused", "backup", "postgres", DATABASE_URL=refused).code == 3
        assert run("prune s3", "--json", "prune", "--from", "s3", "--dry-run").code == 0
        assert run("status s3", "status", "--from", "s3").code == 0
        # The key signs, and a record signed with another key is refused, without either key in the output.
        assert run("other key", "recovery", "restore", name, "--yes", BACKUP_SIGNING_KEY="x" + SIGNING_KEY).code == 10
        action = run_action(
            {
                "command": "backup",
                "databases": "postgres",
                "database-url": url,
                "upload": "s3",
                "signing-key": SIGNING_KEY,
            },
            env={
                "BACKUP_ENCRYPTION_RECIPIENTS": RECIPIENT,
                "BACKUP_ENCRYPTION_IDENTITY": IDENTITY,
                **s3_env(seaweedfs, s3_bucket),
            },
        )
        failed_action = run_action({"command": "backup", "databases": "postgres", "database-url": wrong_password})
    assert action.code == 0, action.log
    assert failed_action.code == 3
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM app.users").fetchone() == (1200,)

    watched = secrets + forms("wrong-" + TEST_PASSWORD) + [WRONG_IDENTITY, "x" + seaweedfs.secret_key]
    watched += ["x" + SIGNING_KEY]
    for label, result in results:
        assert_clean(result.output, watched, f"the output of `{label}`")
    for run_ in (action, failed_action):
        # Only the ::add-mask:: commands may carry a secret: that is how it gets masked.
        unmasked = "\n".join(line for line in run_.log.splitlines() if not line.startswith("::add-mask::"))
        assert_clean(unmasked, watched, "the Action log")
        assert_clean(run_.output_file.read_text(), watched, "GITHUB_OUTPUT")
        assert_clean(run_.summary_file.read_text(), watched, "the step summary")
        for path, text in all_files(run_.workspace):
            if ".git" not in path.parts:
                assert_clean(text, watched, str(path))
    for path, text in all_files(folder):
        assert_clean(text, watched, str(path))
    assert '"signature": "hmac-sha256:' in (folder / "backup_metadata.json").read_text()
    client = seaweedfs.client()
    for listed in client.list_objects_v2(Bucket=s3_bucket).get("Contents", []):
        metadata = client.head_object(Bucket=s3_bucket, Key=listed["Key"])["Metadata"]
        assert metadata.get("chrono-signature", "").startswith("hmac-sha256:")
        assert_clean(json.dumps(metadata), watched, f"the metadata of {listed['Key']}")
    assert watcher.seen > 0, "the watcher never saw pg_dump, psql or chrono-ci running"
    assert watcher.leaks == [], f"a secret appeared in a process's argv: {watcher.leaks[:1]}"


@pytest.mark.parametrize(
    "password",
    [
        "Xq7#Zr9Tk5",
        "Xq7/Zr9Tk5",
        "Xq7?Zr9Tk5",
        "Xq7@Zr9/Tk5",
        "1234#Zr9Tk5",
        "1234?a=Zr9Tk5",
        "1234/Zr9Tk5",
        "1234@Zr9?Tk5",
    ],
)
def test_a_url_that_cannot_be_read_is_never_repeated(run_cli: Run, tmp_path: Path, password: str) -> None:
    """A password with an unencoded # ? / or @ spreads over the host, port, path or query; whatever a parse error
    quoted would be a piece of it."""
    url = f"postgresql://qwuser:{password}@127.0.0.1:5499/shop"
    for setting, args in (
        ("DATABASE_URL", ["backup", "postgres"]),
        ("RESTORE_TARGET_URL", ["recovery", "restore", "x", "--dry-run"]),
    ):
        result = run_cli(*args, env={setting: url, "BACKUP_DIR": str(tmp_path / "b")})
        assert result.code == 2, result.output
        assert setting in result.output and "hint:" in result.output
        for piece in ("Xq7", "1234", "Zr9", "Tk5", "qwuser", "127.0.0.1", "5499", "shop"):
            assert piece not in result.output, f"{piece!r} of the URL is repeated: {result.output}"
