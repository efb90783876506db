"""Action mode: chrono-ci as a GitHub Docker container action (and the container's entrypoint).

The runner hands inputs over as INPUT_<NAME> variables (upper-cased, hyphens kept, every declared input present,
"" when it has no default), enforces nothing, passes the workflow's environment (PATH included) into the
container, and reads results back from files (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) and workflow commands on
stdout. chrono_ci.action turns the inputs into chrono-ci's own environment settings (inputs.py, plan.py), runs
the real command as a child process with --json (runs.py), and turns its JSON document into outputs, a step
summary and annotations (outputs.py, summary.py, workflow.py). Nothing about backups is decided here: a run in
Action mode does exactly what `chrono-ci --json ...` does.

This module is the order of it all: `main` for a run under a runner, `entrypoint` for the container.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from chrono_ci.action.inputs import ACTION_DEFAULTS, Inputs, read_inputs, secrets_to_mask
from chrono_ci.action.outputs import OUTPUTS, build_outputs, write_outputs
from chrono_ci.action.plan import IMAGE_BACKUP_DIR_ENV, make_plan, sane_path
from chrono_ci.action.runs import Run, run_chrono
from chrono_ci.action.summary import cell, fit_summary, write_summary
from chrono_ci.action.workflow import Log
from chrono_ci.action.workspace import display_path, hand_over_to_workspace_owner, unignored_backup_dir
from chrono_ci.errors import ChronoError, ExitCode
from chrono_ci.report.results import (
    DOCUMENTS,
    BackupDocument,
    Failure,
    ListDocument,
    Result,
    TestDocument,
    combined,
)

# The result document of each Action command: `verify` runs chrono-ci's tests.
RESULT_OF_COMMAND = {"backup": "backup", "verify": "test", "restore": "restore", "list": "list"}


def combined_result(runs: Sequence[Run], code_: int) -> Any:
    """chrono-ci's own JSON document; several runs (verify, one test per database) as one test document."""
    if len(runs) == 1 and runs[0].raw is not None:
        return runs[0].raw
    documents: list[Result] = []
    for run in runs:
        result = run.result
        if result is None:  # killed, or a bug: a document that says so stands for it
            message = f"chrono-ci {' '.join(run.args)} exited with code {run.code} without a result."
            result = TestDocument.from_failure(Failure(message, "See the log of this step.", run.code or 1))
        documents.append(result)
    merged = combined(documents)
    return merged.to_json() if merged is not None else None


def _failure_annotations(log: Log, runs: Sequence[Run]) -> None:
    for run in runs:
        result = run.result
        title = f"chrono-ci {' '.join(run.args[:2])} failed"
        failed = result.failed if isinstance(result, BackupDocument) else []
        for failure in failed:
            log.error(f"{failure.kind or ''}: {failure.message}", failure.hint, title=title)
        if result is not None and result.error is not None:
            log.error(result.error.message, result.error.hint, title=title)
        reported = False
        tested = result.results if isinstance(result, TestDocument) else []
        for outcome in [t for t in tested if not t.ok]:
            log.error(
                f"{outcome.file} failed its check: {', '.join(outcome.failed_checks()) or 'see the log'}",
                "Do not restore this archive; make a new backup.",
                title=title,
            )
            reported = True
        rows = result.archives if isinstance(result, ListDocument) else []
        for row in rows:
            if row.get("checksum") == "MISMATCH":
                log.error(
                    f"{row.get('file')}: its sha256 no longer matches backup_metadata.json.",
                    "The archive was damaged or altered after it was made; do not restore it.",
                    title=title,
                )
                reported = True
        if run.code in (int(ExitCode.INTERRUPTED), int(ExitCode.TERMINATED)) and result is None:
            log.error(
                f"chrono-ci {' '.join(run.args)} was stopped by a signal (exit code {run.code}): the job was "
                "cancelled or timed out.",
                "Nothing was kept from the run in progress; earlier backups are intact.",
                title=title,
            )
        elif run.code != 0 and not reported and not failed and (result is None or result.error is None):
            log.error(
                f"chrono-ci {' '.join(run.args)} exited with code {run.code} without a result.",
                "See the log of this step above; exit codes are listed in the README and the docs.",
                title=title,
            )


def main(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> int:
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
        root = unignored_backup_dir(plan.backup_dir)
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
    failure = Failure(error.message, error.hint, int(error.exit_code))
    result = DOCUMENTS[RESULT_OF_COMMAND.get(inputs.get("command").lower(), "backup")].stopped(failure)
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
    from chrono_ci.cli.launch import main as cli_main  # `--version` alone answers without Typer here too

    sys.argv = ["chrono-ci", *argv]
    try:
        cli_main()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else int(ExitCode.FAILED))
    return 0
