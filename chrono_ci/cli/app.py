"""The chrono-ci command: the Typer app, its global options, the commands of chrono_ci.cli's other modules
registered on it, and `main`, which turns SIGTERM and SIGINT into a clean stop.

Each command parses, resolves settings, calls one function and prints. Logic lives in the modules."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from chrono_ci.cli import backup, demo, prune, recovery, status
from chrono_ci.cli.command import State
from chrono_ci.errors import ExitCode, Interrupted
from chrono_ci.report.console import Reporter

app = typer.Typer(
    name="chrono-ci",
    help="Verified, streaming PostgreSQL and Supabase backups for CI: dump, prove, rotate, upload, restore.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: the same text in a terminal and a CI log, each option's variable and default shown as
    # written ([env var: X; default: Y]) instead of being taken for markup.
    rich_markup_mode=None,
)
app.add_typer(backup.backup_app, name="backup")
app.add_typer(recovery.recovery_app, name="recovery")


def _version(value: bool) -> None:
    if value:
        from chrono_ci.cli.version import version_text

        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def main_options(
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON document on stdout; logs go to stderr. Also after the command."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback for unexpected errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show the version, the pg_dump versions it can use and where each comes from, and the installed "
            "extras; then exit.",
        ),
    ] = False,
) -> None:
    State.json_mode = json_output
    State.debug = debug


app.command("prune")(prune.prune)
app.command("demo")(demo.demo)
app.command("status")(status.status)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Raising here unwinds through every `finally`, which removes temp files and kills pg_dump.
    signal.signal(signum, signal.SIG_DFL)
    raise Interrupted(
        f"Stopped by signal {signal.Signals(signum).name}: nothing was kept from the run in progress.",
        hint="Backups made before the signal are intact. Run again when ready.",
        exit_code=ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED,
    )


def main() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        app(prog_name="chrono-ci")  # also under `python -m chrono_ci`, so that usage lines read as documented
    except Interrupted as error:
        Reporter().error(error)
        sys.exit(int(error.exit_code))
