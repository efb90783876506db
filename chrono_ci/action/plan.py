"""The plan of an Action run, made before anything runs: every input checked, the chrono-ci runs decided, and the
environment they get (the inputs as chrono-ci's settings, a PATH that exists in the image)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from chrono_ci.action.inputs import ACTION_DEFAULTS, INPUTS, Inputs, check_input, did_you_mean
from chrono_ci.action.workspace import workspace_of
from chrono_ci.archive.catalog import in_folder, newest_per_kind, trusted_records
from chrono_ci.config.options import check_s3_upload
from chrono_ci.errors import ChronoError, ConfigError, Refused

# Where the image keeps its tools; a workflow's PATH (passed into the container as is) may name none of them.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
IMAGE_BACKUP_DIR_ENV = "CHRONO_CI_DEFAULT_BACKUP_DIR"


@dataclass
class Plan:
    command: str
    runs: list[list[str]]  # chrono-ci arguments, each one child process
    env: dict[str, str]
    workspace: Path
    backup_dir: Path
    notes: list[str] = field(default_factory=list)


def make_plan(inputs: Inputs, environ: Mapping[str, str]) -> Plan:
    """Validate every input and decide the chrono-ci runs; raises ConfigError (or Refused) before anything runs."""
    if inputs.unknown:
        names = ", ".join(inputs.unknown)
        suggestions = "".join(did_you_mean(name, INPUTS) for name in inputs.unknown[:1])
        raise ConfigError(
            f"Unknown input(s): {names}.",
            hint=f"Valid inputs are {', '.join(INPUTS)}{suggestions}. See the Action section of the README.",
        )
    checked: dict[str, str] = {}
    for name, spec in INPUTS.items():
        raw = inputs.get(name) or ACTION_DEFAULTS.get(name, "")
        checked[name] = check_input(spec, raw) if raw else ""

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
    uploads = tuple(word for word in env.get("BACKUP_UPLOAD", "").split(",") if word not in ("", "none"))
    check_s3_upload(uploads, env.get("S3_URL", "").strip(), "Input upload", "the s3-url input (or S3_URL)")
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
    """The newest archive of each kind that a trusted record vouches for, as `backup test` would choose them."""
    try:
        judged = in_folder(backup_dir, None, datetime.now(UTC))
    except ChronoError:
        return []  # `backup test` then reports the problem with its own message
    return [str(backup_dir / record.file) for record in newest_per_kind(trusted_records(judged))]


def sane_path(current: str | None) -> str:
    """The interpreter's folder and the image's tool folders first, then whatever real folders the workflow's
    PATH names (a runner passes the host's PATH into the container, where most of it does not exist)."""
    folders = [str(Path(sys.executable).parent), *SYSTEM_PATH]
    for entry in (current or "").split(os.pathsep):
        if os.path.isabs(entry) and os.path.isdir(entry) and entry not in folders:
            folders.append(entry)
    return os.pathsep.join(dict.fromkeys(folders))
