"""The Action's inputs, as action.yml declares them: the settings of the option table that are inputs
(chrono_ci/config/options.py), between the Action's own inputs (what to do, on which database). Read from the
runner's INPUT_<NAME> variables and checked with the table's grammar; the secrets to mask come from the table too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chrono_ci.config.options import SETTINGS, Grammar, Setting, secret_variables
from chrono_ci.config.parsers import INPUT_BOOLEANS, INPUT_PREFIX, did_you_mean, parse_choice, shown
from chrono_ci.config.parsers import parse_bool as parse_any_bool
from chrono_ci.errors import ConfigError
from chrono_ci.secrets import url_secrets

__all__ = ["did_you_mean"]


@dataclass(frozen=True)
class Input:
    """One input of action.yml: the setting it fills (None: the Action's own), and how its value is checked."""

    name: str
    description: str
    setting: Setting | None = None
    grammar: Grammar = "text"
    choices: tuple[str, ...] = ()
    default: str | None = None  # action.yml's default, for the Action's own inputs

    @property
    def env(self) -> str | None:
        """The variable it sets; None when the Action reads it itself."""
        return self.setting.env if self.setting is not None else None

    @property
    def secret(self) -> bool:
        return self.setting is not None and self.setting.secret


def _from_setting(setting: Setting) -> Input:
    assert setting.input is not None
    return Input(setting.input, setting.input_description(), setting, setting.grammar, setting.choices)


COMMANDS = ("backup", "verify", "restore", "list")
DATABASES = ("postgres", "supabase", "all")
_OWN_FIRST = (
    Input(
        "command", "What to do: backup | verify | restore | list.", grammar="choice", choices=COMMANDS, default="backup"
    ),
    Input(
        "databases",
        "Which databases to back up: postgres (database-url) | supabase (supabase-db-url) | all (every one of the two "
        "that is set). With several, each artifact-name gets -KIND before its extension.",
        grammar="choice",
        choices=DATABASES,
        default="all",
    ),
)
_OWN_LAST = (
    Input(
        "file",
        "The archive for command: restore (required) or command: verify (default: the newest archive of each "
        "database): a path, or a file name in backup-dir.",
    ),
    Input(
        "dry-run",
        "true | false: with command: restore, check the archive and show the plan without changing anything.",
        grammar="bool",
        default="false",
    ),
    Input(
        "confirm",
        "true | false: with command: restore, overwrite the target database (after a safety backup). Without it, "
        "or dry-run, restore is refused.",
        grammar="bool",
        default="false",
    ),
    Input(
        "allow-unlisted",
        "true | false: with command: restore or verify, accept an archive that no trusted record in backup-dir "
        "vouches for (an archive downloaded in another job, with no backup_metadata.json beside it). Only for "
        "archives you trust: see the docs' Provenance page.",
        grammar="bool",
        default="false",
    ),
    Input(
        "terminate-sessions",
        "true | false: with command: restore, end the other sessions on the target database first.",
        grammar="bool",
        default="false",
    ),
)
# The same list, in the same order, as action.yml; tests/test_options.py keeps the two (and the README) in step.
INPUTS: dict[str, Input] = {
    spec.name: spec for spec in (*_OWN_FIRST, *(_from_setting(s) for s in SETTINGS if s.input is not None), *_OWN_LAST)
}
# What an empty input means for the inputs the Action reads itself (the others fall back to their environment
# variable, then to chrono-ci's own default, so that a workflow's `env: DATABASE_URL: ...` keeps working).
ACTION_DEFAULTS = {spec.name: spec.default for spec in INPUTS.values() if spec.default is not None}
# The runner accepts these for every container action (ActionRunner.cs); they are not ours to reject.
RUNNER_INPUTS = frozenset({"args", "entrypoint"})
# Secrets that may arrive through the workflow's `env:` rather than inputs: masked just the same. The table's
# secrets, and what the runner itself hands out.
SECRET_ENV_URLS = tuple(s.env for s in SETTINGS if s.secret and s.grammar == "url")
SECRET_ENV = (
    "PGPASSWORD",
    *(name for name in secret_variables() if name not in SECRET_ENV_URLS),
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)


@dataclass
class Inputs:
    values: dict[str, str]
    unknown: list[str]
    raw_secrets: list[str]

    def get(self, name: str) -> str:
        assert name in INPUTS, name
        return self.values.get(name, "")


def env_names(name: str) -> tuple[str, str]:
    """The two spellings of an input's variable: the runner's (`INPUT_BACKUP-DIR`) and the shell-friendly one."""
    upper = name.upper()
    return f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}"


def read_inputs(environ: Mapping[str, str]) -> Inputs:
    values: dict[str, str] = {}
    raw_secrets: list[str] = []
    for name, spec in INPUTS.items():
        spellings = [environ.get(key, "") for key in dict.fromkeys(env_names(name))]
        if spec.secret:
            raw_secrets += [value for value in spellings if value.strip()]
        values[name] = next((value.strip() for value in spellings if value.strip()), "")
    unknown = []
    for key in environ:
        if not key.startswith("INPUT_"):
            continue
        name = key[len("INPUT_") :].lower().replace("_", "-").replace(" ", "-")
        if name not in INPUTS and name not in RUNNER_INPUTS:
            unknown.append(key[len("INPUT_") :].lower())
            if environ[key].strip():
                # An unknown input may be a misspelt secret (`databse-url`): mask it before saying anything.
                raw_secrets.append(environ[key])
    return Inputs(values, sorted(unknown), raw_secrets)


def secrets_to_mask(inputs: Inputs, environ: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    for raw in inputs.raw_secrets:
        found += url_secrets(raw) if "://" in raw else [raw]
    for name in SECRET_ENV_URLS:
        found += url_secrets(environ.get(name, ""))
    for name in SECRET_ENV:
        if environ.get(name, "").strip():
            found.append(environ[name])
    return found


def parse_bool(raw: str, name: str) -> bool:
    """The toolkit's getBooleanInput: YAML 1.2 core-schema booleans only, anything else is an error."""
    return parse_any_bool(raw, INPUT_PREFIX + name, INPUT_BOOLEANS)


def check_input(spec: Input, raw: str) -> str:
    """The value chrono-ci's environment gets for this input, or a ConfigError naming the input."""
    label = INPUT_PREFIX + spec.name
    if spec.grammar == "bool":
        return "true" if parse_bool(raw, spec.name) else "false"
    if spec.grammar == "s3url":
        if not raw.lower().startswith("s3://"):
            raise ConfigError(
                f"{shown(label, raw)} is not an s3:// URL.",
                hint="Use s3://BUCKET or s3://BUCKET/PREFIX; an S3-compatible server goes in s3-endpoint-url.",
            )
        return raw
    if spec.grammar == "list":
        assert spec.setting is not None
        return ",".join(spec.setting.parse(raw, label)) or "none"
    if spec.grammar == "choice" and spec.setting is None:
        return parse_choice(raw, label, spec.choices)
    if spec.setting is not None and spec.grammar in ("whole", "choice"):
        return str(spec.setting.parse(raw, label))
    return raw
