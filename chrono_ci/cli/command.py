"""What every command shares: the global --json and --debug, the Reporter, the one error handler (a ChronoError
becomes its message, hint and exit code; anything else a short bug report), and the helpers several commands
use."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import typer

from chrono_ci.config.options import s3_url_for_reading
from chrono_ci.config.parsers import parse_choice
from chrono_ci.config.settings import Settings
from chrono_ci.errors import ChronoError, ExitCode
from chrono_ci.report.console import Reporter
from chrono_ci.report.results import Failure, Result
from chrono_ci.storage.base import Storage


class State:
    json_mode = False
    debug = False


def command_reporter(settings: Settings | None = None) -> Reporter:
    reporter = Reporter(json_mode=State.json_mode)
    if settings is not None:
        reporter.add_secrets(settings.secrets())
    return reporter


def fail_with(error: ChronoError, reporter: Reporter, document: type[Result] | None) -> NoReturn:
    reporter.error(error)
    if State.json_mode and document is not None:
        reporter.emit_json(document.stopped(Failure(error.message, error.hint, int(error.exit_code))))
    raise typer.Exit(int(error.exit_code))


def guarded(action: Callable[[Reporter], int], json_output: bool = False, document: type[Result] | None = None) -> None:
    """Run a command body: ChronoError -> message, hint and exit code; anything else -> a short bug report.
    With --json, either way, the command's `document` says so (chrono_ci/report/results.py).

    `json_output` is the command's own --json (the same as the global one, given after the command)."""
    State.json_mode = State.json_mode or json_output
    reporter = command_reporter()
    try:
        code = action(reporter)
    except ChronoError as error:
        fail_with(error, reporter, document)
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if State.debug:
            traceback.print_exc()
        message = f"unexpected {type(exc).__name__}: {reporter.scrub(str(exc))}"
        hint = "this is a bug in chrono-ci; run again with --debug and report the traceback."
        reporter.line(f"error: {message}")
        reporter.line(f"hint:  {hint}")
        if State.json_mode and document is not None:
            reporter.emit_json(document.stopped(Failure(message, hint, int(ExitCode.FAILED))))
        raise typer.Exit(int(ExitCode.FAILED)) from None
    raise typer.Exit(code)


def origin_of(value: str) -> str:
    """Where --from points: local (BACKUP_DIR) or s3 (S3_URL)."""
    return parse_choice(value, "--from", ("local", "s3"))


def s3_storage(settings: Settings) -> Storage:
    from chrono_ci.storage import open_storage

    return open_storage(s3_url_for_reading(settings.s3_url))


def cli_values(ctx: typer.Context, values: Mapping[str, Any]) -> dict[str, str | None]:
    """The settings typed on the command line. Click also reads each option's variable (which is what shows it in
    --help); a value it took from there is left out, for Settings reads the environment itself and blames the
    variable, not the option, for a bad value. Booleans such as --dry-run are the command's own."""
    return {
        key: value if _typed(ctx, key) else None
        for key, value in values.items()
        if isinstance(value, str) or value is None
    }


def _typed(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
