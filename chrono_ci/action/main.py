"""Action mode: chrono-ci as a GitHub Docker container action (and the container's entrypoint).

The runner hands inputs over as INPUT_<NAME> variables (upper-cased, hyphens kept, every declared input present,
"" when it has no default), enforces nothing, passes the workflow's environment (PATH included) into the
container, and reads results back from files (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) and workflow commands on
stdout. This module turns the inputs into chrono-ci's own environment settings, runs the real command as a child
process with --json, and turns its JSON document into outputs, a step summary and annotations. Nothing about
backups is decided here: a run in Action mode does exactly what `chrono-ci --json ...` does.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from chrono_ci.archive.manifest import Manifest, newest_per_kind
from chrono_ci.archive.names import ArchiveName
from chrono_ci.errors import ChronoError, ConfigError, ExitCode, Refused
from chrono_ci.report.console import human_size

InputKind = Literal["text", "bool", "int", "choice", "list", "url", "secret"]


@dataclass(frozen=True)
class Input:
    """One input of action.yml: the chrono-ci setting it fills and how its value is checked."""

    name: str
    env: str | None = None  # the environment setting it sets; None: the Action itself reads it
    kind: InputKind = "text"
    choices: tuple[str, ...] = ()
    minimum: int = 0

    @property
    def secret(self) -> bool:
        return self.kind in ("url", "secret")


COMMANDS = ("backup", "verify", "restore", "list")
DATABASES = ("postgres", "supabase", "all")
UPLOAD_TARGETS = ("none", "artifact", "s3")

# The same list as action.yml; tests/test_action.py keeps the two (and the docs) in step.
INPUTS: dict[str, Input] = {
    spec.name: spec
    for spec in (
        Input("command", kind="choice", choices=COMMANDS),
        Input("databases", kind="choice", choices=DATABASES),
        Input("database-url", "DATABASE_URL", "url"),
        Input("supabase-db-url", "SUPABASE_DB_URL", "url"),
        Input("backup-dir", "BACKUP_DIR"),
        Input("max-backups", "MAX_BACKUPS", "int", minimum=1),
        Input("compression", "BACKUP_COMPRESSION", "choice", choices=("zstd", "gzip", "none")),
        Input("compression-level", "BACKUP_COMPRESSION_LEVEL", "int", minimum=1),
        Input("verify-level", "BACKUP_VERIFY", "choice", choices=("check", "restore")),
        Input("scratch-database-url", "SCRATCH_DATABASE_URL", "url"),
        Input("restore-target-url", "RESTORE_TARGET_URL", "url"),
        Input("pg-bin-dir", "PG_BIN_DIR"),
        Input("upload", "BACKUP_UPLOAD", "list", choices=UPLOAD_TARGETS),
        Input("keep-local", "KEEP_LOCAL", "bool"),
        Input("artifact-name", "ARTIFACT_NAME"),
        Input("artifact-retention-days", "ARTIFACT_RETENTION_DAYS", "int", minimum=1),
        Input("s3-url", "S3_URL"),
        Input("s3-endpoint-url", "S3_ENDPOINT_URL"),
        Input("s3-region", "S3_REGION"),
        Input("s3-sse", "S3_SSE"),
        Input("s3-sse-kms-key-id", "S3_SSE_KMS_KEY_ID"),
        Input("s3-storage-class", "S3_STORAGE_CLASS"),
        Input("aws-role-arn", "AWS_ROLE_ARN"),
        Input("aws-access-key-id", "AWS_ACCESS_KEY_ID", "secret"),
        Input("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", "secret"),
        Input("aws-session-token", "AWS_SESSION_TOKEN", "secret"),
        Input("retention-days", "RETENTION_DAYS", "int", minimum=1),
        Input("keep-daily", "KEEP_DAILY", "int"),
        Input("keep-weekly", "KEEP_WEEKLY", "int"),
        Input("keep-monthly", "KEEP_MONTHLY", "int"),
        Input("signing-key", "BACKUP_SIGNING_KEY", "secret"),
        Input("file", kind="text"),
        Input("dry-run", kind="bool"),
        Input("confirm", kind="bool"),
        Input("allow-unlisted", kind="bool"),
        Input("terminate-sessions", kind="bool"),
    )
}

# What an empty input means for the inputs the Action reads itself (the others fall back to their environment
# variable, then to chrono-ci's own default, so that a workflow's `env: DATABASE_URL: ...` keeps working).
ACTION_DEFAULTS = {
    "command": "backup",
    "databases": "all",
    "dry-run": "false",
    "confirm": "false",
    "allow-unlisted": "false",
    "terminate-sessions": "false",
}

# The runner accepts these for every container action (ActionRunner.cs); they are not ours to reject.
RUNNER_INPUTS = frozenset({"args", "entrypoint"})

# Outputs, in the order they are written. The same list as action.yml.
OUTPUTS: tuple[str, ...] = (
    "ok",
    "exit-code",
    "command",
    "backup-dir",
    "files",
    "paths",
    "sizes",
    "sha256s",
    "verified",
    "postgres-file",
    "postgres-path",
    "postgres-size",
    "postgres-sha256",
    "supabase-file",
    "supabase-path",
    "supabase-size",
    "supabase-sha256",
    "removed",
    "artifact-id",
    "artifact-url",
    "s3-uris",
    "result-json",
)

# Secrets that may arrive through the workflow's `env:` rather than inputs: masked just the same.
SECRET_ENV_URLS = ("DATABASE_URL", "SUPABASE_DB_URL", "SCRATCH_DATABASE_URL", "RESTORE_TARGET_URL")
SECRET_ENV = (
    "PGPASSWORD",
    "BACKUP_SIGNING_KEY",
    "BACKUP_ENCRYPTION_PASSPHRASE",
    "BACKUP_ENCRYPTION_IDENTITY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)

TRUE_WORDS = ("true", "True", "TRUE")
FALSE_WORDS = ("false", "False", "FALSE")

# The runner refuses a step summary over 1 MiB (and drops it whole); stay clear of it.
SUMMARY_LIMIT = 1024 * 1024
SUMMARY_BUDGET = 900 * 1024
ROW_COUNT_LIMITS = (200, 25, 0)
# Outputs count against a 1 MB per-job limit: a result with thousands of row counts must not use it up.
RESULT_JSON_LIMIT = 256 * 1024

# Where the image keeps its tools; a workflow's PATH (passed into the container as is) may name none of them.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
IMAGE_BACKUP_DIR_ENV = "CHRONO_CI_DEFAULT_BACKUP_DIR"


# --- workflow commands -------------------------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """The toolkit's escaping for a command's message (command.ts)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """The toolkit's escaping for a command's property values, where `:` and `,` are separators."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command_line(name: str, message: str = "", **properties: str) -> str:
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items() if value)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


class Log:
    """Everything the Action prints goes to stdout, one stream, so that masks are registered before any line
    that could carry a secret, whatever the order in which the runner reads two streams."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.secrets: list[str] = []

    def mask(self, values: Iterable[str]) -> None:
        for value in values:
            for secret in _mask_forms(value):
                if secret not in self.secrets:
                    self.secrets.append(secret)
                    self._emit(command_line("add-mask", secret))
        self.secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _emit(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        self._emit(self.scrub(text))

    def command(self, name: str, message: str = "", **properties: str) -> None:
        self._emit(
            command_line(name, self.scrub(message), **{key: self.scrub(value) for key, value in properties.items()})
        )

    def group(self, title: str) -> None:
        self.command("group", title)

    def endgroup(self) -> None:
        self.command("endgroup")

    def error(self, message: str, hint: str = "", title: str = "chrono-ci failed") -> None:
        self.command("error", f"{message}\nhint: {hint}" if hint else message, title=title)

    def warning(self, message: str, title: str = "") -> None:
        self.command("warning", message, title=title)


def _mask_forms(value: str) -> list[str]:
    """A value as the runner should mask it: whole, and each line of a multi-line value (the runner matches
    a registered secret line by line in the log)."""
    value = value.strip()
    if not value:
        return []
    forms = [value]
    if "\n" in value:
        forms += [line.strip() for line in value.splitlines() if len(line.strip()) > 0]
    return forms


def url_secrets(url: str) -> list[str]:
    """The whole URL, and its password in every spelling that may reach a log: as written in the URL
    (percent-encoded), decoded, and encoded the canonical way."""
    url = url.strip()
    if not url:
        return []
    found = [url]
    written: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password is not None:
            written.append(parts.password)
        written += [value for key, value in parse_qsl(parts.query, keep_blank_values=True) if key == "password"]
    # A password with a raw @, / or # defeats urlsplit; the last @ before the path still ends the user part.
    rest = url.partition("://")[2]
    userinfo = rest.rpartition("@")[0]
    if ":" in userinfo:
        written.append(userinfo.partition(":")[2])
    for password in written:
        decoded = unquote(password)
        for form in (password, decoded, quote(decoded, safe="")):
            if form and form not in found:
                found.append(form)
    return found


# --- inputs ------------------------------------------------------------------------------------------------------


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
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise ConfigError(
        f"Input {name}: {raw!r} is not a boolean.",
        hint=f"Use true or false (YAML 1.2: {' | '.join(TRUE_WORDS + FALSE_WORDS)}).",
    )


def _check(spec: Input, raw: str) -> str:
    """The value chrono-ci's environment gets for this input, or a ConfigError naming the input."""
    if spec.kind == "bool":
        return "true" if parse_bool(raw, spec.name) else "false"
    if spec.kind == "int":
        text = raw.lstrip("+")
        if not text.isdigit() or int(text) < spec.minimum:
            raise ConfigError(
                f"Input {spec.name}: {raw!r} is not a whole number of {spec.minimum} or more.",
                hint=f"Set {spec.name} to a number such as {max(spec.minimum, 7)}, or leave it out.",
            )
        return str(int(text))
    if spec.kind == "choice":
        word = raw.lower()
        if word not in spec.choices:
            raise ConfigError(
                f"Input {spec.name}: {raw!r} is not one of {', '.join(spec.choices)}.",
                hint=f"Set {spec.name} to one of those{_did_you_mean(word, spec.choices)}.",
            )
        return word
    if spec.kind == "list":
        words = [word.lower() for word in raw.replace(",", " ").split()]
        bad = [word for word in words if word not in spec.choices]
        if bad:
            raise ConfigError(
                f"Input {spec.name}: {', '.join(repr(w) for w in bad)} is not one of {', '.join(spec.choices)}.",
                hint=f"Give one or more of {', '.join(spec.choices)}, separated by commas"
                f"{_did_you_mean(bad[0], spec.choices)}.",
            )
        if "none" in words and len(set(words)) > 1:
            raise ConfigError(
                f"Input {spec.name}: 'none' cannot be combined with other targets ({raw!r}).",
                hint=f"Set {spec.name} to none, or to the targets you want (for example artifact,s3).",
            )
        return ",".join(dict.fromkeys(words))
    return raw


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# --- the plan: what to run, with which environment ---------------------------------------------------------------


@dataclass
class Plan:
    command: str
    runs: list[list[str]]  # chrono-ci arguments, each one child process
    env: dict[str, str]
    workspace: Path
    backup_dir: Path
    notes: list[str] = field(default_factory=list)


def workspace_of(environ: Mapping[str, str]) -> Path:
    value = environ.get("GITHUB_WORKSPACE", "").strip()
    return Path(value) if value else Path.cwd()


def make_plan(inputs: Inputs, environ: Mapping[str, str]) -> Plan:
    """Validate every input and decide the chrono-ci runs; raises ConfigError (or Refused) before anything runs."""
    if inputs.unknown:
        names = ", ".join(inputs.unknown)
        suggestions = "".join(_did_you_mean(name, INPUTS) for name in inputs.unknown[:1])
        raise ConfigError(
            f"Unknown input(s): {names}.",
            hint=f"Valid inputs are {', '.join(INPUTS)}{suggestions}. See the Action section of the README.",
        )
    checked: dict[str, str] = {}
    for name, spec in INPUTS.items():
        raw = inputs.get(name) or ACTION_DEFAULTS.get(name, "")
        checked[name] = _check(spec, raw) if raw else ""

    workspace = workspace_of(environ)
    env = {key: value for key, value in environ.items() if not key.startswith("INPUT_")}
    env.pop(IMAGE_BACKUP_DIR_ENV, None)
    for name, spec in INPUTS.items():
        if spec.env and checked[name]:
            env[spec.env] = checked[name]
    # Backups go to the workspace unless told otherwise, so that later steps (upload, cache) can reach them.
    backup_dir = Path(env.get("BACKUP_DIR", "").strip() or "backups").expanduser()
    if not backup_dir.is_absolute():
        backup_dir = workspace / backup_dir
    env["BACKUP_DIR"] = str(backup_dir)
    env["PATH"] = sane_path(environ.get("PATH"))
    env.setdefault("PYTHONIOENCODING", "utf-8")

    command = checked["command"]
    plan = Plan(command, [], env, workspace, backup_dir)
    upload = env.get("BACKUP_UPLOAD", "")
    if "s3" in upload.split(",") and not env.get("S3_URL", "").strip():
        raise ConfigError(
            "Input upload includes s3 but no bucket is set.",
            hint="Set the s3-url input (or S3_URL) to s3://BUCKET/PREFIX.",
        )
    if checked["s3-url"] and not checked["s3-url"].lower().startswith("s3://"):
        raise ConfigError(
            f"Input s3-url: {checked['s3-url']!r} is not an s3:// URL.",
            hint="Use s3://BUCKET or s3://BUCKET/PREFIX; an S3-compatible server goes in s3-endpoint-url.",
        )
    restore_only = [name for name in ("dry-run", "confirm", "terminate-sessions") if checked[name] == "true"]
    if command != "restore" and restore_only:
        plan.notes.append(f"{' and '.join(restore_only)} only apply to command: restore; ignored.")
    if command not in ("verify", "restore") and checked["allow-unlisted"] == "true":
        plan.notes.append("allow-unlisted only applies to command: verify or restore; ignored.")
    if command == "backup":
        plan.runs.append(["backup", _backup_kind(checked["databases"], env)])
        if checked["file"]:
            plan.notes.append("file only applies to command: verify or restore; ignored.")
    elif command == "verify":
        plan.runs += _verify_runs(checked["file"], env.get("BACKUP_VERIFY", "check"), backup_dir)
        if checked["allow-unlisted"] == "true":
            plan.runs = [[*run, "--allow-unlisted"] if run[:2] == ["recovery", "test"] else run for run in plan.runs]
    elif command == "restore":
        if not checked["file"]:
            raise ConfigError(
                "Input file is required for command: restore.",
                hint="Set file to the archive to restore (a path, or a name in backup-dir); command: list shows them.",
            )
        if checked["dry-run"] != "true" and checked["confirm"] != "true":
            raise Refused(
                f"Restoring {checked['file']} would overwrite the target database, and confirm is not true.",
                hint="Set confirm: true to restore for real (a safety backup is taken first), or dry-run: true "
                "to see what would happen.",
            )
        args = ["recovery", "restore", checked["file"]]
        args += ["--dry-run"] if checked["dry-run"] == "true" else []
        args += ["--yes"] if checked["confirm"] == "true" else []
        args += ["--allow-unlisted"] if checked["allow-unlisted"] == "true" else []
        args += ["--terminate-sessions"] if checked["terminate-sessions"] == "true" else []
        plan.runs.append(args)
    else:
        plan.runs.append(["recovery", "list"])
    return plan


def _backup_kind(databases: str, env: Mapping[str, str]) -> str:
    has = {
        "postgres": bool(env.get("DATABASE_URL", "").strip()),
        "supabase": bool(env.get("SUPABASE_DB_URL", "").strip()),
    }
    source = {"postgres": ("database-url", "DATABASE_URL"), "supabase": ("supabase-db-url", "SUPABASE_DB_URL")}
    if databases != "all":
        if not has[databases]:
            name, variable = source[databases]
            raise ConfigError(
                f"databases: {databases} needs the {name} input (or {variable}), and it is empty.",
                hint=f"Pass the URL from a secret: `{name}: ${{{{ secrets.{variable} }}}}`.",
            )
        return databases
    if not any(has.values()):
        raise ConfigError(
            "No database to back up: database-url and supabase-db-url are both empty.",
            hint="Pass database-url: ${{ secrets.DATABASE_URL }} (and/or supabase-db-url), or set DATABASE_URL in "
            "the step's env.",
        )
    # `backup all` treats a missing Supabase URL as a notice but a missing DATABASE_URL as a failure; with only
    # Supabase configured, "all" means just that one.
    return "all" if has["postgres"] else "supabase"


def _verify_runs(file: str, level: str, backup_dir: Path) -> list[list[str]]:
    restore = ["--restore"] if level == "restore" else []
    if file:
        return [["recovery", "test", file, *restore]]
    if not restore:
        return [["backup", "test"]]
    newest = _newest_archives(backup_dir)
    return [["recovery", "test", name, "--restore"] for name in newest] or [["backup", "test"]]


def _newest_archives(backup_dir: Path) -> list[str]:
    try:
        entries = Manifest(backup_dir).read()
    except ChronoError:
        return []  # `backup test` then reports the problem with its own message
    return [str(backup_dir / entry["file"]) for entry in newest_per_kind(entries)]


def sane_path(current: str | None) -> str:
    """The interpreter's folder and the image's tool folders first, then whatever real folders the workflow's
    PATH names (a runner passes the host's PATH into the container, where most of it does not exist)."""
    folders = [str(Path(sys.executable).parent), *SYSTEM_PATH]
    for entry in (current or "").split(os.pathsep):
        if os.path.isabs(entry) and os.path.isdir(entry) and entry not in folders:
            folders.append(entry)
    return os.pathsep.join(dict.fromkeys(folders))


# --- git: never commit backups -----------------------------------------------------------------------------------


def unignored_backup_dir(backup_dir: Path, env: Mapping[str, str]) -> Path | None:
    """The git work tree holding `backup_dir` when the folder is in one and not ignored there, else None.

    Silent when git is absent or says anything unexpected: this is a warning, never a reason to fail a backup.
    """
    git = shutil.which("git", path=env.get("PATH"))
    if git is None:
        return None
    probe = backup_dir
    while not probe.is_dir() and probe.parent != probe:
        probe = probe.parent
    # The workspace belongs to the runner's user and we run as root: git refuses such a repository ("dubious
    # ownership") unless told that every directory is safe.
    base = [git, "-c", "safe.directory=*", "-C", str(probe)]
    git_env = {key: value for key, value in env.items() if not key.startswith("GIT_")}
    try:
        top = subprocess.run(
            [*base, "rev-parse", "--show-toplevel"], capture_output=True, text=True, env=git_env, timeout=30
        )
        if top.returncode != 0 or not top.stdout.strip():
            return None
        root = Path(top.stdout.strip())
        relative = os.path.relpath(backup_dir.resolve(), root.resolve())
        if relative.startswith(".."):
            return None
        # A file inside the folder: a `backups/` pattern only matches the folder itself once it exists.
        sample = Path(relative) / "postgres_backup_2000-01-01_00-00-00.sql.zst"
        ignored = subprocess.run(
            [git, "-c", "safe.directory=*", "-C", str(root), "check-ignore", "-q", "--", sample.as_posix()],
            capture_output=True,
            env=git_env,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return root if ignored.returncode == 1 else None


# --- running chrono-ci -------------------------------------------------------------------------------------------


@dataclass
class Run:
    args: list[str]
    code: int
    document: dict[str, Any] | None  # the JSON result as an object (a listing becomes {"archives": [...]})
    raw: Any = None  # the JSON result exactly as chrono-ci printed it

    @property
    def file_arg(self) -> str | None:
        """FILE of `recovery test|restore FILE`."""
        return self.args[2] if self.args[:1] == ["recovery"] and len(self.args) > 2 else None


def run_chrono(args: Sequence[str], plan: Plan, log: Log) -> Run:
    """`python -m chrono_ci --json ARGS` as a child: its log streams into ours (scrubbed), its JSON is kept."""
    # -I: the workflow's PYTHONPATH/PYTHONHOME and the workspace (the current folder) must not change which
    # chrono_ci runs.
    argv = [sys.executable, "-I", "-m", "chrono_ci", "--json", *args]
    cwd = plan.workspace if plan.workspace.is_dir() else None
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=plan.env,
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        previous = _forward_signals(proc)
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                log.line(line.rstrip("\n"))
            code = proc.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        out.seek(0)
        text = out.read()
    if code < 0:
        code = 128 - code  # killed by a signal: the shell's convention
    try:
        raw = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        raw = None
    document = {"ok": code == 0, "archives": raw} if isinstance(raw, list) else raw
    return Run(list(args), code, document if isinstance(document, dict) else None, raw)


def _forward_signals(proc: subprocess.Popen[str]) -> dict[int, Any]:
    """A cancelled job stops the container with SIGTERM to PID 1 (us): pass it on so that chrono-ci cleans up
    and exits with its own code, instead of dying half-way or being killed after the grace period."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, forward)
    return previous


def hand_over_to_workspace_owner(backup_dir: Path, workspace: Path) -> None:
    """Give what we wrote in the workspace to its owner.

    The container runs as root, the later steps of the job as the runner's user: root-owned 0600 archives in a
    0700 folder would be unreadable to an upload step. Ownership changes; the private modes stay.
    """
    if os.geteuid() != 0 or not backup_dir.is_dir():
        return
    try:
        owner = workspace.stat()
        folder, top = backup_dir.resolve(), workspace.resolve()
        folder.relative_to(top)
        targets = [*folder.iterdir()]
    except (OSError, ValueError):
        return
    if owner.st_uid == 0:
        return
    while folder != top:  # the backup folder and the folders made above it, up to the workspace itself
        targets.append(folder)
        folder = folder.parent
    for path in targets:
        with contextlib.suppress(OSError):
            if path.lstat().st_uid == 0:
                os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


# --- results: outputs ------------------------------------------------------------------------------------------------


def _entries(document: Mapping[str, Any], *keys: str) -> list[dict[str, Any]]:
    for key in keys:
        value = document.get(key)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict) and "file" in item]
    return []


def _kind_of(entry: Mapping[str, Any]) -> str:
    if entry.get("kind"):
        return str(entry["kind"])
    parsed = ArchiveName.parse(Path(str(entry.get("file", ""))).name)
    return parsed.kind if parsed else ""


def display_path(path: Path, workspace: Path) -> str:
    """Relative to the workspace when inside it: the container's /github/workspace is another path on the
    runner, and a later step's working directory is the workspace, so a relative path works there too."""
    with contextlib.suppress(ValueError):
        return Path(path).relative_to(workspace).as_posix() or "."
    return str(path)


def archives_of(runs: Sequence[Run], plan: Plan) -> list[dict[str, Any]]:
    """The archives a run made, tested, listed or restored, each with its path (empty when no local copy was
    kept); sizes and hashes from the manifest where the command's own result does not carry them."""
    found: list[tuple[dict[str, Any], str | None]] = []
    for run in runs:
        if run.document is None:
            continue
        found += [(entry, None) for entry in _entries(run.document, "backups", "results", "archives")]
        if isinstance(run.document.get("file"), str):
            found.append((dict(run.document), run.file_arg))
    if not found:
        return []
    try:
        listed = {entry.get("file"): entry for entry in Manifest(plan.backup_dir).read()}
    except ChronoError:
        listed = {}
    complete = []
    for entry, file_arg in found:
        name = Path(str(entry["file"])).name
        merged = {**listed.get(name, {}), **entry}
        if file_arg and "/" in file_arg:  # chrono-ci's rule: a path when it has a '/', else a name in the folder
            merged["path"] = str(plan.workspace / Path(file_arg).expanduser())
        elif merged.get("local") is False and plan.command == "backup":
            merged["path"] = ""
        merged.setdefault("path", str(plan.backup_dir / name))
        complete.append(merged)
    return complete


def _shown_path(entry: Mapping[str, Any], plan: Plan) -> str:
    return display_path(Path(entry["path"]), plan.workspace) if entry.get("path") else ""


def _verified(entry: Mapping[str, Any]) -> bool | None:
    verified = entry.get("verified")
    if isinstance(verified, dict) and "ok" in verified and "checks" not in entry:
        return bool(verified["ok"])
    if "checks" in entry or entry.get("ok") is not None:
        return bool(entry.get("ok"))
    return None


def _uploads(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [upload for entry in entries for upload in entry.get("uploads") or [] if isinstance(upload, dict)]


def build_outputs(plan: Plan, runs: Sequence[Run], code: int, result: Any) -> dict[str, str]:
    archives = archives_of(runs, plan)
    verdicts = [_verified(entry) for entry in archives]
    uploads = _uploads(archives)
    outputs = {name: "" for name in OUTPUTS}
    outputs.update(
        {
            "ok": "true" if code == 0 else "false",
            "exit-code": str(code),
            "command": plan.command,
            "backup-dir": display_path(plan.backup_dir, plan.workspace),
            "files": "\n".join(Path(str(e["file"])).name for e in archives),
            "paths": "\n".join(_shown_path(e, plan) for e in archives),
            "sizes": "\n".join(str(e.get("size_bytes", "")) for e in archives),
            "sha256s": "\n".join(str(e.get("sha256", "")) for e in archives),
            "verified": ""
            if plan.command == "list" or not archives or None in verdicts
            else "true"
            if all(verdicts)
            else "false",
            "removed": "\n".join(
                str(name) for run in runs if run.document for name in run.document.get("removed") or []
            ),
            "artifact-id": "\n".join(
                str(u["artifact_id"]) for u in uploads if u.get("target") == "artifact" and u.get("artifact_id")
            ),
            "artifact-url": "\n".join(
                str(u["artifact_url"]) for u in uploads if u.get("target") == "artifact" and u.get("artifact_url")
            ),
            "s3-uris": "\n".join(str(u["uri"]) for u in uploads if u.get("target") == "s3" and u.get("uri")),
            "result-json": _result_json(result),
        }
    )
    if plan.command != "list":
        for entry in archives:
            kind = _kind_of(entry)
            if kind in ("postgres", "supabase"):
                outputs[f"{kind}-file"] = Path(str(entry["file"])).name
                outputs[f"{kind}-path"] = _shown_path(entry, plan)
                outputs[f"{kind}-size"] = str(entry.get("size_bytes", ""))
                outputs[f"{kind}-sha256"] = str(entry.get("sha256", ""))
    return outputs


def _result_json(result: Any) -> str:
    text = json.dumps(result, ensure_ascii=False, default=str)
    if len(text.encode()) <= RESULT_JSON_LIMIT:
        return text
    # Row counts are what grows without bound; everything else is a few lines per archive.
    slim = json.loads(text)
    for entry in _all_dicts(slim):
        if isinstance(entry.get("tables"), dict) and "file" in entry:
            entry["tables_omitted"] = len(entry["tables"])
            entry["tables"] = {}
    text = json.dumps(slim, ensure_ascii=False, default=str)
    if len(text.encode()) <= RESULT_JSON_LIMIT:
        return text
    ok = result.get("ok") if isinstance(result, dict) else None
    return json.dumps({"ok": ok, "truncated": True, "note": "result too large for an output; see the step summary"})


def _all_dicts(value: Any) -> Iterable[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _all_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_dicts(item)


def write_outputs(path: str, outputs: Mapping[str, str]) -> None:
    """Append to GITHUB_OUTPUT: `name=value` for one line, the heredoc form with a random delimiter otherwise."""
    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        for name, value in outputs.items():
            if name not in OUTPUTS:
                raise ValueError(f"output {name} is not declared in action.yml")
            if "\n" not in value and "\r" not in value:
                handle.write(f"{name}={value}\n")
                continue
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            while delimiter in value:
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


# --- results: the step summary ---------------------------------------------------------------------------------------


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: database names and table names are not ours to trust."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("`", "'")


def literal(value: Any) -> str:
    return f"`{cell(value)}`" if str(value) else ""


def _stored(entry: Mapping[str, Any], workspace: Path) -> str:
    places = [f"local {literal(display_path(Path(entry['path']), workspace))}"] if entry.get("path") else []
    for upload in entry.get("uploads") or []:
        mark = "" if upload.get("ok", True) else " (FAILED)"
        if upload.get("target") == "s3":
            places.append(f"{literal(upload.get('uri', 's3'))}{mark}")
        elif upload.get("target") == "artifact":
            label = f"artifact {upload.get('artifact_id', '')}".strip()
            url = str(upload.get("artifact_url") or "")
            places.append((f"[{cell(label)}]({cell(url)})" if url.startswith("https://") else cell(label)) + mark)
        else:
            places.append(cell(upload.get("target", "?")) + mark)
    return "<br>".join(places) or "nowhere"


def _backup_section(entry: Mapping[str, Any], removed: list[str], workspace: Path, row_limit: int) -> list[str]:
    size = int(entry.get("size_bytes") or 0)
    raw = int(entry.get("raw_size_bytes") or 0)
    ratio = f"{raw / size:.1f}x" if size and raw else ""
    verified = _mapping(entry.get("verified"))
    verdict = "passed" if verified.get("ok") else "FAILED" if verified else "not verified"
    tables = _mapping(entry.get("tables"))
    rows = sum(n for n in tables.values() if isinstance(n, int))
    where = f"{entry.get('database', '')} on {entry.get('host', '')}:{entry.get('port', '')}"
    lines = [
        f"### {'✅' if verified.get('ok') else '⚠️'} {cell(_kind_of(entry))}: {cell(where)}",
        "",
        "| | |",
        "|---|---|",
        f"| file | {literal(entry.get('file', ''))} |",
        f"| size | {human_size(size)} ({size} bytes){f', from {human_size(raw)} of SQL' if raw else ''} |",
        f"| ratio | {ratio} |",
        f"| compression | {cell(entry.get('compression', ''))} {cell(entry.get('compression_level') or '')} |",
        f"| duration | {cell(entry.get('duration_seconds', ''))} s |",
        f"| sha256 | {literal(entry.get('sha256', ''))} |",
        f"| verification | {cell(verified.get('level', ''))}: {verdict} |",
        f"| row counts | {len(tables)} tables, {rows} rows |",
        f"| stored | {_stored(entry, workspace)} |",
        f"| retention removed | {'<br>'.join(literal(name) for name in removed) or 'nothing'} |",
        "",
    ]
    if tables and row_limit:
        shown = sorted(tables.items())[:row_limit]
        lines += [
            f"<details><summary>Row counts of {cell(entry.get('file', ''))}</summary>",
            "",
            "| table | rows |",
            "|---|--:|",
            *(f"| {cell(name)} | {cell(count)} |" for name, count in shown),
        ]
        if len(tables) > len(shown):
            lines.append(f"| … {len(tables) - len(shown)} more tables (see `result-json` output) | |")
        lines += ["", "</details>", ""]
    elif tables:
        lines += [f"Row counts of {len(tables)} tables left out to keep the summary under 1 MiB.", ""]
    return lines


def _test_section(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| archive | result | checks | restore-verification |", "|---|---|---|---|"]
    for result in results:
        checks = [c for c in result.get("checks") or [] if isinstance(c, dict)]
        failed = [c for c in checks if c.get("ok") is False]
        detail = ", ".join(cell(c.get("name", "")) for c in failed or checks)
        verdict = "✅ valid" if result.get("ok") else "❌ FAILED"
        proof = _mapping(result.get("restore"))
        restored = ""
        if proof:
            restored = f"{'✅' if proof.get('ok') else '❌'} {cell(proof.get('tables_compared', ''))} tables compared"
            restored += f"; {cell(proof['error'])}" if proof.get("error") else ""
        lines.append(f"| {literal(result.get('file', ''))} | {verdict} | {detail} | {restored} |")
    return [*lines, ""]


def _listing_section(entries: list[dict[str, Any]]) -> list[str]:
    lines = ["| archive | kind | database | created (UTC) | size | checksum |", "|---|---|---|---|--:|---|"]
    for entry in entries:
        size = entry.get("size_bytes")
        newest = " (newest)" if entry.get("newest") else ""
        lines.append(
            f"| {literal(entry.get('file', ''))}{newest} | {cell(entry.get('kind', ''))} "
            f"| {cell(entry.get('database') or '')} | {cell(str(entry.get('created_at', ''))[:19])} "
            f"| {human_size(size) if isinstance(size, int) else ''} | {cell(entry.get('checksum', ''))} |"
        )
    return [*lines, ""]


def _restore_section(result: Mapping[str, Any]) -> list[str]:
    tables = _mapping(result.get("tables"))
    rows = sum(n for n in tables.values() if isinstance(n, int))
    done = "dry run: valid, nothing changed" if result.get("dry_run") else "restored, row counts match"
    return [
        "| | |",
        "|---|---|",
        f"| archive | {literal(result.get('file', ''))} |",
        f"| target | {literal(result.get('target', ''))} |",
        f"| result | {done if result.get('ok') else 'FAILED'} |",
        f"| safety backup | {literal(result.get('safety_backup') or '')} |",
        f"| row counts | {f'{len(tables)} tables, {rows} rows' if tables else ''} |",
        "",
    ]


def _problems(run: Run) -> list[str]:
    doc = run.document or {}
    lines: list[str] = []
    for failure in [f for f in doc.get("failed") or [] if isinstance(f, dict)]:
        lines += [
            f"> **❌ {cell(failure.get('kind', ''))} failed:** {cell(failure.get('message', ''))}  ",
            f"> hint: {cell(failure.get('hint', ''))}",
            "",
        ]
    error = doc.get("error")
    if isinstance(error, dict):
        lines += [f"> **❌ {cell(error.get('message', ''))}**  ", f"> hint: {cell(error.get('hint', ''))}", ""]
    if run.document is None and run.code != 0:
        lines += [f"> **❌ chrono-ci exited {run.code} without a result;** see the step's log.", ""]
    return lines


def build_summary(plan: Plan, runs: Sequence[Run], code_: int, row_limit: int = ROW_COUNT_LIMITS[0]) -> str:
    verdict = "succeeded" if code_ == 0 else f"FAILED (exit code {code_})"
    lines = [f"## chrono-ci {cell(plan.command)}: {verdict}", ""]
    for run in runs:
        doc = run.document or {}
        if len(runs) > 1:
            lines += [f"#### `chrono-ci {cell(' '.join(Path(a).name for a in run.args))}`", ""]
        what = run.args[:2]
        if what[:1] == ["backup"] and what != ["backup", "test"]:
            removed = [str(name) for name in doc.get("removed") or []]
            for entry in _entries(doc, "backups"):
                mine = [name for name in removed if _kind_of({"file": name}) == _kind_of(entry)]
                kept = entry.get("local") is not False
                path = (entry.get("path") or str(plan.backup_dir / entry["file"])) if kept else ""
                lines += _backup_section({**entry, "path": path}, mine, plan.workspace, row_limit)
        elif what == ["backup", "test"] and doc.get("results"):
            lines += _test_section([r for r in doc["results"] if isinstance(r, dict)])
        elif what == ["recovery", "test"] and "checks" in doc:
            lines += _test_section([doc])
        elif what == ["recovery", "list"]:
            lines += _listing_section(_entries(doc, "archives"))
        elif what == ["recovery", "restore"] and "file" in doc:
            lines += _restore_section(doc)
        lines += _problems(run)
    lines.append(f"Backup folder: {literal(display_path(plan.backup_dir, plan.workspace))}")
    return "\n".join(lines) + "\n"


def fit_summary(plan: Plan, runs: Sequence[Run], code_: int, budget: int = SUMMARY_BUDGET) -> str:
    """The summary at the most detail that fits: fewer row counts first, then a plain cut with a note."""
    text = ""
    for limit in ROW_COUNT_LIMITS:
        text = build_summary(plan, runs, code_, limit)
        if len(text.encode()) <= budget:
            return text
    note = "\n\n… summary cut to stay under GitHub's 1 MiB limit; the whole result is in the result-json output.\n"
    cut = text.encode()[: max(0, budget - len(note.encode()))].decode("utf-8", errors="ignore")
    return cut + note


def write_summary(path: str, text: str) -> None:
    try:
        used = os.path.getsize(path)
    except OSError:
        used = 0
    if used + len(text.encode()) > SUMMARY_LIMIT:
        return  # the runner would drop the whole summary, earlier steps' part included
    with open(path, "a", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


# --- main --------------------------------------------------------------------------------------------------------


def combined_result(runs: Sequence[Run], code_: int) -> Any:
    """chrono-ci's own JSON for one run; several runs (verify, one per database) as {"ok", "runs": [...]}."""
    if len(runs) == 1 and runs[0].raw is not None:
        return runs[0].raw
    documents = [run.raw if run.raw is not None else {"ok": False, "exit_code": run.code} for run in runs]
    return {"ok": code_ == 0, "runs": documents}


def _failure_annotations(log: Log, runs: Sequence[Run]) -> None:
    for run in runs:
        doc = run.document or {}
        title = f"chrono-ci {' '.join(run.args[:2])} failed"
        for failure in [f for f in doc.get("failed") or [] if isinstance(f, dict)]:
            log.error(
                f"{failure.get('kind', '')}: {failure.get('message', '')}", str(failure.get("hint", "")), title=title
            )
        error = doc.get("error")
        if isinstance(error, dict):
            log.error(str(error.get("message", "")), str(error.get("hint", "")), title=title)
        tested = [r for r in doc.get("results") or [] if isinstance(r, dict)] + ([doc] if "checks" in doc else [])
        reported = False
        for result in [r for r in tested if r.get("ok") is False]:
            failed = [str(c.get("name")) for c in result.get("checks") or [] if isinstance(c, dict) and not c.get("ok")]
            if _mapping(result.get("restore")).get("ok") is False:
                failed.append("restore-verification")
            log.error(
                f"{result.get('file')} failed its check: {', '.join(failed) or 'see the log'}",
                "Do not restore this archive; make a new backup.",
                title=title,
            )
            reported = True
        for row in _entries(doc, "archives"):
            if row.get("checksum") == "MISMATCH":
                log.error(
                    f"{row['file']}: its sha256 no longer matches backup_metadata.json.",
                    "The archive was damaged or altered after it was made; do not restore it.",
                    title=title,
                )
                reported = True
        if run.code in (int(ExitCode.INTERRUPTED), int(ExitCode.TERMINATED)) and run.document is None:
            log.error(
                f"chrono-ci {' '.join(run.args)} was stopped by a signal (exit code {run.code}): the job was "
                "cancelled or timed out.",
                "Nothing was kept from the run in progress; earlier backups are intact.",
                title=title,
            )
        elif run.code != 0 and not reported and not doc.get("failed") and not isinstance(error, dict):
            log.error(
                f"chrono-ci {' '.join(run.args)} exited with code {run.code} without a result.",
                "See the log of this step above; exit codes are listed in the README.",
                title=title,
            )


def main(environ: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> int:
    """Run the Action from the runner's environment; returns the exit code for the container."""
    environ = dict(os.environ if environ is None else environ)
    log = Log(stream)
    inputs = read_inputs(environ)
    log.mask(secrets_to_mask(inputs, environ))
    try:
        return _run(environ, inputs, log)
    except Exception as exc:  # a bug here must still end in an annotation, and never in an unscrubbed traceback
        log.error(
            f"The chrono-ci Action failed unexpectedly: {type(exc).__name__}: {exc}",
            "This is a bug in chrono-ci; please report it with this step's log (re-run with debug logging for "
            "the traceback).",
        )
        if environ.get("RUNNER_DEBUG") == "1":
            for line in traceback.format_exc().splitlines():
                log.line(line)
        return int(ExitCode.FAILED)


def _run(environ: Mapping[str, str], inputs: Inputs, log: Log) -> int:
    try:
        plan = make_plan(inputs, environ)
    except ChronoError as error:
        log.error(error.message, error.hint, title="Invalid chrono-ci input")
        _finish_early(environ, inputs, error)
        return int(error.exit_code)

    log.group("chrono-ci settings")
    log.line(f"command: {plan.command}; runs: {'; '.join('chrono-ci ' + ' '.join(r) for r in plan.runs)}")
    log.line(f"backup folder: {plan.backup_dir}")
    log.line(f"upload: {plan.env.get('BACKUP_UPLOAD') or 'none'}")
    log.endgroup()
    for note in plan.notes:
        log.warning(note, title="chrono-ci input ignored")
    if plan.command == "backup":
        root = unignored_backup_dir(plan.backup_dir, plan.env)
        if root is not None:
            log.warning(
                f"The backup folder {display_path(plan.backup_dir, plan.workspace)} is inside the git work tree "
                f"{root} and not ignored: never commit backups, they hold your data. Add "
                f"{display_path(plan.backup_dir, root)}/ to .gitignore, or set backup-dir outside the repository.",
                title="Backups are not git-ignored",
            )

    runs: list[Run] = []
    for args in plan.runs:
        log.group(f"chrono-ci {' '.join(args)}")
        try:
            runs.append(run_chrono(args, plan, log))
        finally:
            log.endgroup()
            hand_over_to_workspace_owner(plan.backup_dir, plan.workspace)
    code_ = next((run.code for run in runs if run.code != 0), 0)

    _failure_annotations(log, runs)
    outputs = build_outputs(plan, runs, code_, combined_result(runs, code_))
    _publish(log, environ, outputs, fit_summary(plan, runs, code_))
    return code_


def _publish(log: Log, environ: Mapping[str, str], outputs: Mapping[str, str], summary: str) -> None:
    safe = {name: log.scrub(value) for name, value in outputs.items()}
    output_file = environ.get("GITHUB_OUTPUT", "").strip()
    summary_file = environ.get("GITHUB_STEP_SUMMARY", "").strip()
    log.group("chrono-ci outputs")
    for name, value in safe.items():
        if name != "result-json" and value:
            log.line(f"{name}: {value.replace(chr(10), ', ')}")
    try:
        if output_file:
            write_outputs(output_file, safe)
        if summary_file:
            write_summary(summary_file, log.scrub(summary))
    except OSError as exc:
        log.warning(f"Could not write the step's outputs or summary: {exc.strerror} ({exc.filename}).")
    log.endgroup()


def _finish_early(environ: Mapping[str, str], inputs: Inputs, error: ChronoError) -> None:
    """Outputs for a run stopped before chrono-ci started: ok=false and the error, like chrono-ci's own JSON."""
    result = {"ok": False, "error": {"message": error.message, "hint": error.hint, "exit_code": int(error.exit_code)}}
    outputs = {name: "" for name in OUTPUTS}
    outputs.update(
        {
            "ok": "false",
            "exit-code": str(int(error.exit_code)),
            "command": inputs.get("command").lower() or ACTION_DEFAULTS["command"],
            "result-json": json.dumps(result, ensure_ascii=False),
        }
    )
    output_file = environ.get("GITHUB_OUTPUT", "").strip()
    if output_file:
        with contextlib.suppress(OSError):
            write_outputs(output_file, outputs)
    summary_file = environ.get("GITHUB_STEP_SUMMARY", "").strip()
    if summary_file:
        text = f"## chrono-ci: invalid input\n\n> **❌ {cell(error.message)}**  \n> hint: {cell(error.hint)}\n"
        with contextlib.suppress(OSError):
            write_summary(summary_file, text)


# --- the container's entrypoint ------------------------------------------------------------------------------------


def in_action(environ: Mapping[str, str], argv: Sequence[str]) -> bool:
    """Action mode: started by a runner (GITHUB_ACTIONS=true with INPUT_ variables) and given no arguments.
    Arguments mean someone chose a command (`docker run IMAGE backup all`), even inside a workflow."""
    return not argv and environ.get("GITHUB_ACTIONS") == "true" and any(key.startswith("INPUT_") for key in environ)


def _repair_environment() -> None:
    os.environ["PATH"] = sane_path(os.environ.get("PATH"))
    home = os.environ.get("HOME", "")
    if not home or not os.path.isdir(home):
        with contextlib.suppress(KeyError):
            os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir


def entrypoint(argv: Sequence[str]) -> int:
    """The image's entrypoint: Action mode under a runner, else the chrono-ci command with `argv`."""
    _repair_environment()
    if in_action(os.environ, argv):
        return main()
    default_dir = os.environ.get(IMAGE_BACKUP_DIR_ENV, "").strip()
    if default_dir and not os.environ.get("BACKUP_DIR", "").strip():
        # The image's volume (/backups) for `docker run -v ...:/backups IMAGE backup all`.
        os.environ["BACKUP_DIR"] = default_dir
    from chrono_ci.cli.app import main as cli_main

    sys.argv = ["chrono-ci", *argv]
    try:
        cli_main()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else int(ExitCode.FAILED))
    return 0
