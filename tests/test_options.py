"""The option table (chrono_ci/config/options.py) is the one declaration of every setting: action.yml, the docs'
tables, the commands' --help, the Action's inputs and masks, and the variables the code reads all agree with it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from chrono_ci.action.inputs import INPUTS, SECRET_ENV, SECRET_ENV_URLS, check_input
from chrono_ci.cli.app import app
from chrono_ci.config.options import BY_ENV, SETTING, SETTINGS
from chrono_ci.config.settings import resolve_settings
from chrono_ci.errors import ConfigError
from tests import option_docs
from tests.fixtures.cli_tree import subcommands

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chrono_ci"

# Variables chrono-ci reads that are not its settings: the runner's, the AWS SDK's and libpq's own conventions.
FOREIGN = {
    "PATH": "the shell's",
    "HOME": "the shell's",
    "XDG_CACHE_HOME": "the XDG base directory spec's: where the cache of pg_dump versions goes",
    "AWS_REGION": "the AWS SDK's; S3_REGION falls back to it",
    "AWS_DEFAULT_REGION": "the AWS SDK's",
    "AWS_PROFILE": "the AWS SDK's profile chain",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "botocore's own web identity provider",
    "AWS_ENDPOINT_URL_STS": "the AWS SDK's STS endpoint override",
    "CHRONO_CI_DEFAULT_BACKUP_DIR": "set by the image (Dockerfile), never by a user",
    "LD_PRELOAD": "kept when nss_wrapper is added for the throwaway server, never a setting",
}
FOREIGN_PREFIXES = ("GITHUB_", "ACTIONS_", "RUNNER_", "PG", "INPUT_")


@pytest.fixture(scope="module")
def action_yml() -> dict[str, Any]:
    import yaml

    loaded = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_action_yml_inputs_are_the_tables() -> None:
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    block = re.search(r"(?ms)^inputs:\n.*?(?=^\S)", text)
    assert block is not None
    assert block.group(0).rstrip("\n") + "\n" == option_docs.inputs_yaml(), (
        "action.yml's inputs differ from the option table: run `python -m tests.option_docs`"
    )


def test_action_yml_parses_to_the_same_inputs(action_yml: dict[str, Any]) -> None:
    """The rendered block, read by a YAML parser, says what the table says (folding and quoting included)."""
    inputs = action_yml["inputs"]
    assert list(inputs) == list(INPUTS)
    for name, spec in INPUTS.items():
        declared = inputs[name]
        assert declared["description"] == spec.description, name
        assert declared.get("default") == spec.default, name
        if spec.env:
            assert f"[{spec.env}]" in declared["description"]


def test_documented_tables_are_the_tables() -> None:
    """docs/settings.md's settings table, and the inputs tables of README.md and docs/action.md."""
    tables = option_docs.rendered_tables()
    assert {path.name for path, _, _ in tables} == {"settings.md", "README.md", "action.md"}
    for path, header, table in tables:
        text = path.read_text(encoding="utf-8")
        assert option_docs.table_after(text, header) == table, (
            f"{path.relative_to(ROOT)}'s table under {header!r} differs from the option table: "
            "run `python -m tests.option_docs`"
        )


def _literal_variables() -> Iterator[tuple[str, str]]:
    pattern = re.compile(
        r"""(?:environ|env|os\.environ)(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]+)"|"""
        r"""(?:env_value|days_setting)\([a-z_]+,\s*"([A-Z][A-Z0-9_]+)"|"""
        r"""\b[A-Z_]+_ENV\s*=\s*"([A-Z][A-Z0-9_]+)\""""
    )
    for path in sorted(PACKAGE.rglob("*.py")):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            name = next(group for group in match.groups() if group)
            yield path.relative_to(ROOT).as_posix(), name


def test_every_variable_the_code_reads_is_declared() -> None:
    found = list(_literal_variables())
    assert ("chrono_ci/storage/s3/store.py", "S3_SSE") in found  # the scan sees the readers
    undeclared = sorted(
        {
            f"{path}: {name}"
            for path, name in found
            if name not in BY_ENV and name not in FOREIGN and not name.startswith(FOREIGN_PREFIXES)
        }
    )
    assert not undeclared, "variables read but not in the option table:\n" + "\n".join(undeclared)


def test_defaults_applied_elsewhere_are_the_tables() -> None:
    from chrono_ci.storage.s3 import oidc

    assert SETTING["aws_role_session_name"].default == oidc.DEFAULT_SESSION_NAME
    assert SETTING["aws_oidc_audience"].default == oidc.DEFAULT_AUDIENCE
    settings = resolve_settings({}, {})
    assert settings.max_backups == 30 and settings.compression == "zstd" and settings.verify == "check"
    assert settings.keep_local is True and settings.lock_timeout == 10.0


def test_the_action_masks_every_secret_of_the_table() -> None:
    secret = {setting.env for setting in SETTINGS if setting.secret}
    assert secret == set(SECRET_ENV_URLS) | (set(SECRET_ENV) & set(BY_ENV))
    assert {"DATABASE_URL", "BACKUP_SIGNING_KEY", "AWS_SECRET_ACCESS_KEY", "HEARTBEAT_URL"} <= secret


def test_settings_mask_the_secret_variables_they_do_not_parse() -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "aws-secret-value", "HEARTBEAT_URL": "https://hc-ping.com/some-uuid-value"}
    assert set(env.values()) <= set(resolve_settings({}, env).secrets())


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("max_backups", "0", "MAX_BACKUPS='0' is not a whole number of 1 or more."),
        ("keep_daily", "-1", "KEEP_DAILY='-1' is not a whole number of 0 or more."),
        ("keep_local", "maybe", "KEEP_LOCAL='maybe' is not a boolean."),
        ("compression", "lz4", "BACKUP_COMPRESSION='lz4' is not one of zstd, gzip, none."),
        ("upload", "ftp", "BACKUP_UPLOAD: 'ftp' is not one of none, artifact, s3."),
        ("upload", "none,s3", "BACKUP_UPLOAD: 'none' cannot be combined with other targets ('none,s3')."),
        ("lock_timeout", "soon", "RESTORE_LOCK_TIMEOUT='soon' is not a number of seconds of 0.1 or more."),
    ],
)
def test_one_grammar_for_variables_and_inputs(name: str, raw: str, message: str) -> None:
    """A variable and the Action input of the same setting are read by the same parser and fail alike."""
    setting = SETTING[name]
    with pytest.raises(ConfigError) as from_env:
        resolve_settings({}, {setting.env: raw})
    assert from_env.value.message == message
    if setting.input is not None and setting.grammar != "bool":  # inputs take YAML's booleans only
        with pytest.raises(ConfigError) as from_input:
            check_input(INPUTS[setting.input], raw)
        assert from_input.value.message == message.replace(setting.env, f"Input {setting.input}").replace(
            f"Input {setting.input}=", f"Input {setting.input}: "
        )


# --- --help, as printed ----------------------------------------------------------------------------------------------


def _commands(command: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, sub in subcommands(command).items():
        path = (*prefix, name)
        yield path
        yield from _commands(sub, path)


COMMANDS = sorted(_commands(typer.main.get_command(app)))


def _help(*args: str, columns: str = "80") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "chrono_ci", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": columns, "TERM": "dumb", "DATABASE_URL": "postgresql://u:pw@h/d"},
    )
    assert done.returncode == 0 and not done.stderr, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda path: " ".join(path) or "chrono-ci")
def test_help_shows_each_settings_variable_and_default(command: tuple[str, ...]) -> None:
    """Rendered as a CI log gets it (no terminal): every option of a setting says its variable and its default,
    its help is there whole, nothing is taken for markup, and no type prints as <str>."""
    text = _help(*command)
    flat = " ".join(text.split())
    assert text.startswith("Usage: chrono-ci") and "Options:" in text
    assert "╭" not in text and "<str>" not in text.replace("FILE <str>", ""), text
    assert "pw" not in flat  # a variable's value is never shown, only its name
    shown = 0
    for setting in SETTINGS if command != ("demo",) else ():  # the demo's --backup-dir is its own, not BACKUP_DIR
        if setting.flag is None or not re.search(rf"^\s+{re.escape(setting.flag)}\b", text, re.M):
            continue
        shown += 1
        extra = f"[env var: {setting.env}"
        extra += f"; default: {setting.shown_default}]" if setting.shown_default is not None else "]"
        assert setting.help.rstrip(".") in flat, (setting.env, text)
        assert extra in flat, (setting.env, text)
    leaf = command and not subcommands(_command_at(command))
    if leaf and command != ("demo",):
        assert "--json" in text  # accepted after the command as well as before
        if command != ("backup", "test") and command[0] != "status":
            assert shown > 0


def _command_at(path: tuple[str, ...]) -> object:
    command: object = typer.main.get_command(app)
    for name in path:
        command = subcommands(command)[name]
    return command


def test_help_lists_every_command() -> None:
    assert {("backup", "postgres"), ("recovery", "restore"), ("status",), ("prune",)} <= set(COMMANDS)
