"""What every command shares: the global --json and --debug, the Reporter, the one error handler (a ChronoError
becomes its message, hint and exit code; anything else a short bug report), and the helpers several commands
use."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import typer

from chrono_ci.config.settings import Settings
from chrono_ci.errors import ChronoError, ConfigError, ExitCode
from chrono_ci.report.console import Reporter
from chrono_ci.storage.base import Storage
from chrono_ci.verify.integrity import IntegrityReport


class State:
    json_mode = False
    debug = False


def command_reporter(settings: Settings | None = None) -> Reporter:
    reporter = Reporter(json_mode=State.json_mode)
    if settings is not None:
        reporter.add_secrets(settings.secrets())
    return reporter


def fail_with(error: ChronoError, reporter: Reporter) -> NoReturn:
    reporter.error(error)
    if State.json_mode:
        reporter.emit_json(
            {
                "ok": False,
                "error": {"message": error.message, "hint": error.hint, "exit_code": int(error.exit_code)},
            }
        )
    raise typer.Exit(int(error.exit_code))


def guarded(action: Callable[[Reporter], int]) -> None:
    """Run a command body: ChronoError -> message, hint and exit code; anything else -> a short bug report."""
    reporter = command_reporter()
    try:
        code = action(reporter)
    except ChronoError as error:
        fail_with(error, reporter)
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if State.debug:
            traceback.print_exc()
        reporter.line(f"error: unexpected {type(exc).__name__}: {reporter.scrub(str(exc))}")
        reporter.line("hint:  this is a bug in chrono-ci; run again with --debug and report the traceback.")
        raise typer.Exit(int(ExitCode.FAILED)) from None
    raise typer.Exit(code)


def print_checks(report: IntegrityReport, reporter: Reporter) -> None:
    for check in report.checks:
        if check.ok is True:
            reporter.ok(f"{check.name}: {check.detail}")
        elif check.ok is None:
            reporter.info(f"{check.name}: {check.detail}")
        else:
            reporter.fail(f"{check.name}: {check.detail}")
    reporter.line(f"{report.file}: {'valid' if report.ok else 'FAILED: ' + ', '.join(c.name for c in report.failed())}")


def origin_of(value: str) -> str:
    word = value.strip().lower()
    if word not in ("local", "s3"):
        raise ConfigError(f"--from {value!r} is not local or s3.", hint="Use --from local (default) or --from s3.")
    return word


def s3_storage(settings: Settings) -> Storage:
    from chrono_ci.storage import open_storage

    if not settings.s3_url:
        raise ConfigError("--from s3 needs S3_URL.", hint="Set S3_URL=s3://bucket/prefix.")
    return open_storage(settings.s3_url)


def cli_values(values: dict[str, Any]) -> dict[str, str | None]:
    # Only the options that are settings; booleans such as --dry-run are the command's own.
    return {key: value for key, value in values.items() if isinstance(value, str) or value is None}
