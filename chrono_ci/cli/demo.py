"""`chrono-ci demo`: a throwaway PostgreSQL, a sample database, and the real commands run against it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chrono_ci.cli.command import guarded


def demo(
    backup_dir: Annotated[
        str, typer.Option("--backup-dir", metavar="PATH", help="Where the demo's backups go.")
    ] = "./chrono-ci-demo",
) -> None:
    """Start a throwaway PostgreSQL, load a sample shop database, and run the real commands against it."""
    from chrono_ci.jobs.demo import run_demo

    guarded(lambda reporter: run_demo(Path(backup_dir), reporter))
