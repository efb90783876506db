"""The `chrono-ci` entry point: `chrono-ci --version` is answered with the standard library alone, everything
else goes to the Typer app (chrono_ci/cli/app.py).

Typer, click and every command's modules take most of a second to import on a busy 2-core runner, and a version
check (a CI step's first line, a bug report) needs none of them. The text is the same either way: both paths
print chrono_ci.cli.version.version_text().
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from chrono_ci.cli.version import version_text

        sys.stdout.write(version_text() + "\n")
        sys.stdout.flush()
        return
    from chrono_ci.cli.app import main as run_app

    run_app()
