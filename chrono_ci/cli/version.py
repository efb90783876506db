"""`chrono-ci --version`: the version, every pg_dump chrono-ci can use and where each comes from, and which
extras are installed; what a bug report needs, and how to tell which pg_dump a backup will pick."""

from __future__ import annotations

import os
from pathlib import Path

from chrono_ci import __version__
from chrono_ci.extras import EXTRAS, installed
from chrono_ci.source.tools import find_pg_tools


def version_text() -> str:
    only = os.environ.get("PG_BIN_DIR", "").strip()
    tools = find_pg_tools(Path(only).expanduser() if only else None)
    lines = [f"chrono-ci {__version__}"]
    if tools:
        width = max(len(tool.version) for tool in tools)
        origin_width = max(len(tool.origin) for tool in tools)
        lines += [f"pg_dump {t.version:<{width}}  {t.origin:<{origin_width}}  {t.bin_dir}" for t in tools]
    else:
        where = f"in PG_BIN_DIR={only}" if only else "on PATH, in /usr/lib/postgresql/*/bin or from the embedded extra"
        lines.append(f"pg_dump: none found {where}")
    present = [name for name in EXTRAS if installed(name)]
    missing = [name for name in EXTRAS if name not in present]
    summary = ", ".join(present) or "none"
    if missing:
        summary += f" (not installed: {', '.join(missing)}; pip install 'chrono-ci[{','.join(missing)}]')"
    lines.append(f"extras: {summary}")
    return "\n".join(lines)
