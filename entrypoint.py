"""The container's entrypoint: Action mode under a GitHub runner, else the chrono-ci command with its arguments.

Run as `/usr/local/bin/python -I /app/entrypoint.py`: an absolute interpreter, because the runner passes the
workflow's PATH into the container and it may name nothing that exists here. Everything else lives in
chrono_ci.action.
"""

import sys

from chrono_ci.action.main import entrypoint

if __name__ == "__main__":
    sys.exit(entrypoint(sys.argv[1:]))
