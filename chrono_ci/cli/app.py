"""The chrono-ci command: the Typer app, its global options, the commands of chrono_ci.cli's other modules
registered on it, and `main`, which turns SIGTERM and SIGINT into a clean stop.

Each command parses, resolves settings, calls one function and prints. Logic lives in the modules.

The commands are loaded when asked for (click's lazily loaded subcommands): `chrono-ci backup postgres` imports
chrono_ci/cli/backup.py and what it needs, not the modules of `recovery`, `status`, `prune` and `demo`, which
would only delay pg_dump's start. `--help` and an unknown command load them all, so the listing and the
suggestions for a typo are complete."""

from __future__ import annotations

import importlib
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from chrono_ci.cli.command import State
from chrono_ci.errors import ExitCode, Interrupted
from chrono_ci.report.console import Reporter

if TYPE_CHECKING:  # the click that typer (0.27 and later) carries inside itself: what TyperGroup's methods take
    from typer._click import Context as ClickContext

# Each command: the module and the Typer app or function that makes it, in the order `--help` lists them.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "prune": ("chrono_ci.cli.prune", "prune"),
    "demo": ("chrono_ci.cli.demo", "demo"),
    "status": ("chrono_ci.cli.status", "status"),
    "backup": ("chrono_ci.cli.backup", "backup_app"),
    "recovery": ("chrono_ci.cli.recovery", "recovery_app"),
}


def _typer_app() -> typer.Typer:
    # Plain click help: the same text in a terminal and a CI log, each option's variable and default shown as
    # written ([env var: X; default: Y]) instead of being taken for markup.
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _build(name: str) -> TyperCommand | TyperGroup:
    """The command `name`, made as the app would make it had it been registered up front."""
    module, attribute = SUBCOMMANDS[name]
    made = getattr(importlib.import_module(module), attribute)
    holder = _typer_app()
    if isinstance(made, typer.Typer):
        holder.add_typer(made, name=name)
    else:
        holder.command(name)(made)
    built = typer.main.get_group(holder).commands[name]
    assert isinstance(built, TyperCommand | TyperGroup)
    return built


class _LazyCommands(TyperGroup):
    def list_commands(self, ctx: ClickContext) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: ClickContext, cmd_name: str) -> TyperCommand | TyperGroup | None:
        if cmd_name not in self.commands:
            # An unknown name loads them all: the error then suggests the closest command.
            for name in [cmd_name] if cmd_name in SUBCOMMANDS else SUBCOMMANDS:
                self.commands.setdefault(name, _build(name))
        found = self.commands.get(cmd_name)
        assert found is None or isinstance(found, TyperCommand | TyperGroup)
        return found


app = typer.Typer(
    name="chrono-ci",
    help="Verified, streaming PostgreSQL and Supabase backups for CI: dump, prove, rotate, upload, restore.",
    cls=_LazyCommands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # as in _typer_app
)


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


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # Raising here unwinds through every `finally`, which removes temp files and kills pg_dump.
    signal.signal(signum, signal.SIG_DFL)
    stop = Interrupted(
        f"Stopped by signal {signal.Signals(signum).name}: nothing was kept from the run in progress.",
        hint="Backups made before the signal are intact. Run again when ready.",
        exit_code=ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED,
    )
    Interrupted.requested = stop
    raise stop


def main() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        app(prog_name="chrono-ci")  # also under `python -m chrono_ci`, so that usage lines read as documented
    except Interrupted as error:
        Reporter().error(error)
        sys.exit(int(error.exit_code))
