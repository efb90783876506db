"""The docs hold every message chrono-ci can print, every command, every setting and every exit code.

Each has its page: the messages docs/troubleshooting.md, the commands docs/cli.md, the settings
docs/settings.md, the exit codes docs/exit-codes.md (and a summary line in README.md, the front door).
The messages are collected from the source with `ast`, so a new `raise ConfigError(...)`, warning or failed check
fails this test until docs/troubleshooting.md's tables have a row for it:

- every `ChronoError` (or subclass) constructed with a message, anywhere in chrono_ci/;
- every warning: `reporter.warn(...)`, a `warn(...)` / `_warn(...)` callback, `log.warning(...)` (the logging
  module's last-resort handler prints it on stderr; in the Action it is a workflow annotation) and the Action's
  "input ignored" notes;
- every failure line: `reporter.fail(...)`, a failed `Check(name, False, detail)`, a status `Problem(...)`, a
  restore-verification summary (chrono_ci/verify/scratch.py), a restore's `problems.append(...)` and the Action's
  `log.error(...)` annotations.

A message is documented when a `code span` in the message cell of a troubleshooting table (first header cell
"message") quotes one of its distinctive fragments: the start of a literal run (the text between placeholders,
whole words, at least QUOTED characters) that no other message shares; a message without one must have all its
literal runs, in order, in one span. A row for an error must also give its exit code ("Exit N"). Messages that
need no row are in ALLOWED, each with its reason. docs/cli.md must also name every command of `chrono-ci --help`,
docs/settings.md every environment variable of chrono_ci/config/settings.py's OPTIONS, and docs/exit-codes.md
every code of chrono_ci/errors.py's ExitCode.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import typer.main

from chrono_ci.cli.app import app
from chrono_ci.config.settings import OPTIONS
from chrono_ci.errors import ExitCode
from tests.fixtures.cli_tree import subcommands

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chrono_ci"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TROUBLESHOOTING = DOCS / "troubleshooting.md"
COMMANDS = DOCS / "cli.md"
SETTINGS = DOCS / "settings.md"
EXIT_CODES = DOCS / "exit-codes.md"

MIN_FRAGMENT = 15  # characters; shorter runs ("is not set", "failed") say nothing about which message it is
QUOTED = 25  # characters (and 3 words) of a run the docs must quote at least: a row may shorten the rest
_STRIP = " \t\n.,:;!?='\"()[]{}"
_PRINTF = re.compile(r"%[-+ #0-9.]*[sdrifx]")  # logging's lazy placeholders

# Messages that need no row, keyed by "path: template" (the message with each placeholder as {}), with the reason.
# A stale entry fails test_the_allow_list_names_only_existing_messages, so the list cannot rot.
ALLOWED: dict[str, str] = {
    # --- internal: no setting, input or command can make chrono-ci print these ---
    "chrono_ci/cli/backup.py: unexpected {}": "the body of the heartbeat's failure ping for a bug; the bug itself is "
    "re-raised (exit 1, traceback with --debug)",
    "chrono_ci/crypto/streams.py: age encryption failed: {}.": "encrypt_io fails only on a bug: its input is our "
    "own channel and its output a list in memory, and the recipients were parsed by pyrage already",
    "chrono_ci/retention/policy.py: {} must be a whole number, got {}": "RetentionPolicy guard: settings parses every "
    "count first (`is not a positive whole number`, `is not a whole number of 0 or more`)",
    "chrono_ci/retention/policy.py: {} must be at least {}, got {}": "RetentionPolicy guard, as above",
    "chrono_ci/storage/__init__.py: No backup location was given.": "open_storage() is only called with a validated "
    "S3_URL; folders, file:// and artifact:// locations there are library API",
    "chrono_ci/storage/__init__.py: Malformed backup location: a scheme without ://.": "as above",
    "chrono_ci/storage/__init__.py: Unknown backup location scheme (before ://) in the URL.": "as above",
    "chrono_ci/storage/__init__.py: The file:// URL names a remote host; file:// URLs can only point at this "
    "machine.": "as above",
    "chrono_ci/storage/__init__.py: The file:// URL names no folder.": "as above",
    "chrono_ci/storage/artifacts/store.py: Artifact retention must be at least 1 day, not {}.": "API guard: from_env "
    "passes only values _days() accepted (`ARTIFACT_RETENTION_DAYS must be at least 1, not 0.` is documented)",
    "chrono_ci/storage/artifacts/store.py: The artifact block size must be between 1 byte and 4000 MiB, not {}.": "API "
    "guard: the block size is not a setting",
    "chrono_ci/storage/local.py: Invalid object name for a local folder: {}.": "API guard: local object names are "
    "archive names chrono-ci made",
    "chrono_ci/storage/s3/errors.py: {} in {} is protected by {} and cannot be deleted yet.": "ObjectLocked is caught: "
    "remote retention keeps the archive ('protected by object lock'), and removing a failed archive ignores it",
    "chrono_ci/storage/s3/config.py: S3 part_size={} is outside what S3 accepts.": "API guard: S3Config.from_env "
    "leaves the part size and timeouts at their defaults",
    "chrono_ci/storage/s3/config.py: S3 retry_deadline={} must be 0 (no retry) or more seconds.": "API guard: "
    "from_env passes only what the option table's S3_RETRY_DEADLINE grammar accepted (a whole number of 0 or more)",
    "chrono_ci/storage/s3/config.py: S3 checksums={} must be one of {}.": "API guard: from_env passes only what "
    "S3_CHECKSUMS's choices accepted",
    "chrono_ci/storage/s3/config.py: S3 connect_timeout and read_timeout must be positive numbers of seconds.": "as "
    "above",
    "chrono_ci/restore/session.py: line {}: the server did not start taking COPY data.": "protocol guard: the server "
    "answers a `COPY ... FROM stdin` it accepted with CopyInResponse; anything else was an error, reported as such",
    # --- pass-throughs: no text of their own; what they print is a message documented where it is made ---
    "chrono_ci/verify/integrity.py: {}": "Check('decryption' / 'decompression', False, exc.message): an AgeError or "
    "VerificationFailed message",
    "chrono_ci/jobs/backup_all.py: {}: {}": "`backup all`'s summary (`KIND: first line of the error`)",
    "chrono_ci/restore/run.py: {}": "each of plan.problems, collected from `problems.append(...)`",
    "chrono_ci/cli/backup.py: {}": "`backup test`'s failed `readable` check: the message of a StorageError from "
    "chrono_ci/archive/safefile.py, documented where it is raised",
    "chrono_ci/config/parsers.py: {}: {}": "`S3_URL: ` + a parse_s3_url() message",
    "chrono_ci/action/main.py: {}": "the Action's annotations of a note, or of a run's error message",
    "chrono_ci/action/main.py: {}: {}": "the Action's annotation of a `backup all` failure: `KIND: MESSAGE`",
}


@dataclass(frozen=True)
class Message:
    path: str  # relative to the repository, e.g. chrono_ci/config/settings.py
    line: int
    kind: str  # what prints it: an exception class, "warning" or "failure"
    parts: tuple[str | None, ...]  # the literal text, None for each placeholder

    @property
    def template(self) -> str:
        return " ".join("".join("{}" if part is None else part for part in self.parts).split())

    @property
    def key(self) -> str:
        return f"{self.path}: {self.template}"

    def runs(self) -> list[str]:
        """The literal runs between placeholders, in order, whitespace-normalized and trimmed."""
        text = "".join("\x00" if part is None else part for part in self.parts)
        found = [" ".join(run.split()).strip(_STRIP) for run in text.split("\x00")]
        return [run for run in found if run]


def quotes(messages: list[Message]) -> dict[str, list[str]]:
    """For each template, the distinctive fragments a troubleshooting row may quote (any one of them will do).

    A fragment is the start of a literal run: whole words, at least 3 of them and QUOTED characters (or the whole
    run if shorter, but at least MIN_FRAGMENT characters), and found in no message with another template. A row
    may shorten the rest of the run with "...". A message without one (`{} has no host.`) has none here and
    needs all its runs, in order, in one row instead.
    """
    templates = {message.template: message.runs() for message in messages}
    corpus = "\x00".join(run for runs in templates.values() for run in runs)
    found: dict[str, list[str]] = {}
    for template, runs in templates.items():
        own = "\x00".join(runs)
        found[template] = []
        for run in runs:
            words = run.split(" ")
            for count in range(1, len(words) + 1):
                start = " ".join(words[:count])
                if len(start) < MIN_FRAGMENT or (count < len(words) and (count < 3 or len(start) < QUOTED)):
                    continue
                if corpus.count(start) == own.count(start):  # no other message has it
                    found[template].append(start)
                    break
    return found


# ----------------------------------------------------------------------------------------------- collecting


def _literal(node: ast.expr | None, constants: dict[str, str], printf: bool = False) -> list[str | None]:
    """The literal text of a message expression, None where a value is filled in at run time.

    A module-level constant (`IDENTITY_ENV`) counts as literal text: it is the same in every message.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if not printf:
            return [node.value]
        pieces: list[str | None] = []
        for index, piece in enumerate(_PRINTF.split(node.value)):
            pieces += [None, piece] if index else [piece]
        return pieces
    if isinstance(node, ast.Name) and node.id in constants:
        return [constants[node.id]]
    if isinstance(node, ast.FormattedValue) and node.conversion == -1 and node.format_spec is None:
        return _literal(node.value, constants)
    if isinstance(node, ast.JoinedStr):
        parts: list[str | None] = []
        for value in node.values:
            parts += _literal(value, constants)
        return parts
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = _literal(node.left, constants, printf) + _literal(node.right, constants, printf)
        return parts if any(part is not None for part in parts) else [None]  # `counter + 1` is one value
    return [None]


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _argument(call: ast.Call, index: int, name: str) -> ast.expr | None:
    if len(call.args) > index and not any(isinstance(arg, ast.Starred) for arg in call.args[: index + 1]):
        return call.args[index]
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


@cache
def _trees() -> dict[str, ast.Module]:
    return {
        path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(encoding="utf-8"), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _constants(path: str) -> dict[str, str]:
    """String constants by name: the module's own, then those defined the same way everywhere (imports)."""

    def defined(tree: ast.Module) -> dict[str, str]:
        return {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name) and target.id.isupper()
        }

    everywhere: dict[str, set[str]] = {}
    for tree in _trees().values():
        for name, value in defined(tree).items():
            everywhere.setdefault(name, set()).add(value)
    shared = {name: next(iter(values)) for name, values in everywhere.items() if len(values) == 1}
    return shared | defined(_trees()[path])


@cache
def _error_classes() -> dict[str, tuple[int, int]]:
    """Every ChronoError subclass in chrono_ci/: (position of `message` in its constructor, its exit code)."""
    classes: dict[str, ast.ClassDef] = {}
    for tree in _trees().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node

    def bases(node: ast.ClassDef) -> list[str]:
        return [base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases]

    def parent(name: str) -> str | None:
        return next((base for base in bases(classes[name]) if base in found), None)

    def message_index(name: str) -> int:
        for item in classes[name].body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                return [arg.arg for arg in item.args.posonlyargs + item.args.args][1:].index("message")
        above = parent(name)
        return message_index(above) if above else 0

    def exit_code(name: str) -> int:
        for item in classes[name].body:
            target = item.target if isinstance(item, ast.AnnAssign) else None
            target = item.targets[0] if isinstance(item, ast.Assign) else target
            if isinstance(target, ast.Name) and target.id == "exit_code" and isinstance(item.value, ast.Attribute):
                return int(ExitCode[item.value.attr])
        above = parent(name)
        return exit_code(above) if above else int(ExitCode.FAILED)

    found = {"ChronoError"}
    while grown := {name for name, node in classes.items() if name not in found and set(bases(node)) & found}:
        found |= grown
    return {name: (message_index(name), exit_code(name)) for name in found}


def _summary_failures(function: ast.FunctionDef) -> Iterator[ast.expr]:
    """The strings RestoreCheck.summary() returns for a failed restore-verification (not under `if self.ok`)."""
    skipped: set[int] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Attribute) and node.test.attr == "ok":
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and node.value is not None and id(node) not in skipped:
            yield node.value


def collect_messages() -> list[Message]:
    errors = _error_classes()
    messages: list[Message] = []
    for path, tree in _trees().items():
        constants = _constants(path)

        def add(node: ast.AST, kind: str, expr: ast.expr | None, printf: bool = False) -> None:
            if expr is not None:
                parts = tuple(_literal(expr, constants, printf))  # noqa: B023
                messages.append(Message(path, getattr(node, "lineno", 0), kind, parts))  # noqa: B023

        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "summary" and path.endswith("scratch.py"):
                for value in _summary_failures(node):
                    add(value, "failure", value)
            if not isinstance(node, ast.Call):
                continue
            name = _callee(node)
            if name in errors:
                add(node, name, _argument(node, errors[name][0], "message"))
            elif name in ("warn", "_warn", "warning"):
                add(node, "warning", _argument(node, 0, "message"), printf=len(node.args) > 1)
            elif name == "fail" or (name == "error" and path.startswith("chrono_ci/action/")):
                add(node, "failure", _argument(node, 0, "message"))
            elif name == "Check":
                ok = _argument(node, 1, "ok")
                if isinstance(ok, ast.Constant) and ok.value is False:
                    add(node, "failure", _argument(node, 2, "detail"))
            elif name == "Problem":
                add(node, "failure", _argument(node, 1, "message"))
            elif name == "append" and _appends_to(node, "problems", "notes"):
                # restore's and Supabase restore's rights problems (each printed as a FAIL line), the Action's
                # "input ignored" notes (each a warning annotation)
                add(node, "warning" if _appends_to(node, "notes") else "failure", node.args[0])
    return messages


def _appends_to(call: ast.Call, *lists: str) -> bool:
    """`problems.append("text")` / `plan.notes.append(f"...")`: text added to a list of messages."""
    target = call.func.value if isinstance(call.func, ast.Attribute) else None
    named = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else ""
    return named in lists and len(call.args) == 1 and isinstance(call.args[0], ast.Constant | ast.JoinedStr | ast.BinOp)


# --------------------------------------------------------------------------------------------------- the docs


def _page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Row:
    quoted: tuple[str, ...]  # the `code spans` of its message cell, unescaped and whitespace-normalized
    cause: str  # the "cause and fix" cell


def troubleshooting_rows(text: str) -> list[Row]:
    """The rows of a page's troubleshooting tables (the tables whose first header cell is "message")."""
    rows: list[Row] = []
    in_table = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", stripped)[1:-1]]
        if not in_table:
            in_table = cells[:1] == ["message"]
            continue
        spans = re.findall(r"`((?:\\`|[^`])+)`", cells[0])
        quoted = tuple(" ".join(re.sub(r"\\([|`])", r"\1", span).split()) for span in spans)
        rows.append(Row(quoted, cells[1] if len(cells) > 1 else ""))
    return rows


def documents(row: Row, message: Message, fragments: list[str]) -> bool:
    """Whether the row quotes the message: one of its fragments, or (without any) all its runs in order."""
    if fragments:
        return any(fragment in quote for fragment in fragments for quote in row.quoted)
    if not message.runs():
        return False  # nothing of its own to quote: only ALLOWED can excuse it
    in_order = re.compile(".*?".join(re.escape(run) for run in message.runs()))
    return any(in_order.search(quote) for quote in row.quoted)


def undocumented(messages: list[Message], rows: list[Row]) -> list[Message]:
    """The messages no troubleshooting row documents (ALLOWED ones aside)."""
    fragments = quotes(messages)
    return [
        message
        for message in messages
        if message.key not in ALLOWED and not any(documents(row, message, fragments[message.template]) for row in rows)
    ]


# ---------------------------------------------------------------------------------------------------- tests


def test_the_collector_finds_every_kind_of_message() -> None:
    kinds = {message.kind for message in collect_messages()}
    assert {"ConfigError", "StorageError", "AgeError", "ObjectLocked", "warning", "failure"} <= kinds
    assert len(collect_messages()) > 200


def test_every_message_has_a_troubleshooting_row() -> None:
    messages = collect_messages()
    missing = undocumented(messages, troubleshooting_rows(_page(TROUBLESHOOTING)))
    assert not missing, "docs/troubleshooting.md has no row for:\n" + "\n".join(
        f"  {m.path}:{m.line} ({m.kind}) {m.template!r}" for m in missing
    )


def test_every_error_row_gives_its_exit_code() -> None:
    """A row for an error says "Exit N" with the code of its class (rows may give several: "Exit 8 (...) or 7")."""
    messages = collect_messages()
    fragments = quotes(messages)
    codes = {name: code for name, (_, code) in _error_classes().items()}
    rows = troubleshooting_rows(_page(TROUBLESHOOTING))
    wrong = []
    for message in messages:
        if message.kind not in codes or message.key in ALLOWED:
            continue
        found = [row for row in rows if documents(row, message, fragments[message.template])]
        exit_n = re.compile(rf"\bExit\b[^|]*\b{codes[message.kind]}\b")
        if found and not any(exit_n.search(row.cause) for row in found):
            wrong.append(f"  {message.path}:{message.line} {message.template!r} needs Exit {codes[message.kind]}")
    assert not wrong, "rows without the exit code of their error:\n" + "\n".join(wrong)


def test_every_message_without_a_distinctive_fragment_is_allowed() -> None:
    vague = [m for m in collect_messages() if not m.runs() and m.key not in ALLOWED]
    assert not vague, "messages with no literal text; document them in ALLOWED with a reason:\n" + "\n".join(
        f"  {m.key}" for m in vague
    )


def test_the_allow_list_names_only_existing_messages() -> None:
    keys = {message.key for message in collect_messages()}
    assert not set(ALLOWED) - keys, f"stale ALLOWED entries: {sorted(set(ALLOWED) - keys)}"


def test_a_missing_row_is_noticed() -> None:
    text = _page(TROUBLESHOOTING)
    row = next(line for line in text.splitlines() if "`Connection refused by HOST:PORT`" in line)
    missing = undocumented(collect_messages(), troubleshooting_rows(text.replace(row + "\n", "")))
    assert [m.template for m in missing] == ["Connection refused by {}:{} ({})."]


def _commands(command: object, prefix: str = "") -> Iterator[str]:
    """Every command path of the CLI, as typed: "backup postgres", "recovery list", "status", ...

    Duck-typed: Typer ships its own copy of click, so a group is anything with `list_commands`.
    """
    for name, sub in subcommands(command).items():
        path = f"{prefix} {name}".strip()
        if subcommands(sub):
            yield from _commands(sub, path)
        else:
            yield path


def test_every_command_is_in_the_docs() -> None:
    commands = sorted(_commands(typer.main.get_command(app)))
    assert "backup postgres" in commands and "status" in commands
    text = _page(COMMANDS)
    assert not [command for command in commands if f"chrono-ci {command}" not in text]


@pytest.mark.parametrize("option", sorted({option.env for option in OPTIONS.values()}))
def test_every_setting_is_in_the_docs(option: str) -> None:
    assert f"`{option}`" in _page(SETTINGS)


def _exit_code_rows() -> dict[str, str]:
    """The exit codes page's table: the code cell ("0", "130 / 143") to its meaning."""
    rows = {}
    for line in _page(EXIT_CODES).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and re.fullmatch(r"\d+( / \d+)*", cells[0]):
            rows[cells[0]] = cells[1]
    return rows


def test_every_exit_code_is_on_the_exit_codes_page() -> None:
    rows = _exit_code_rows()
    documented = {int(code) for cell in rows for code in cell.split(" / ")}
    assert documented == {int(code) for code in ExitCode}, "docs/exit-codes.md's table and ExitCode differ"
    assert all(rows.values()), "an exit code without its meaning"


def test_the_readme_sums_up_every_exit_code_and_links_the_page() -> None:
    """The front door keeps a paragraph of exit codes, every code in it, and a link to the page that explains them."""
    line = next((part for part in _page(README).split("\n\n") if part.startswith("Exit codes:")), "")
    assert "/exit-codes/)" in line, "README.md needs a paragraph `Exit codes: ...` that links the exit codes page"
    named = {int(code) for code in re.findall(r"\b(\d+)\b", re.sub(r"\]\([^)]*\)", "]", line))}
    assert named >= {int(code) for code in ExitCode}, (
        f"README.md's exit code line lacks {sorted(set(ExitCode) - named)}"
    )
