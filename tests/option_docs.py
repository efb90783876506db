"""The parts of action.yml and the docs that derive from the option table (chrono_ci/config/options.py), rendered.

The settings table lives in docs/settings.md, the Action's inputs table in README.md (the front door keeps it)
and in docs/action.md. tests/test_options.py checks that the files hold exactly these; after a change to the
table, rewrite them with `python -m tests.option_docs` (it changes nothing else in any file).
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from chrono_ci.action.inputs import INPUTS, Input
from chrono_ci.config.options import SETTINGS, Setting

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
ACTION_PAGE = ROOT / "docs" / "action.md"
ACTION_YML = ROOT / "action.yml"
SETTINGS_HEADER = "| environment | option | default | meaning |"
INPUTS_HEADER = "| input | variable | default | meaning |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default_cell(setting: Setting, described: str | None = None) -> str:
    if described is not None:
        return _cell(described)
    if setting.default is not None:
        return f"`{setting.default}`"
    return _cell(setting.default_text) if setting.default_text is not None else "(none)"


def _secrecy(setting: Setting) -> str:
    if not setting.secret:
        return ""
    return " (masked; never with its password on the command line)" if setting.flag else " (secret: masked)"


def settings_table() -> str:
    lines = [SETTINGS_HEADER, "|---|---|---|---|"]
    for setting in SETTINGS:
        option = f"`{setting.flag}`" if setting.flag else "(environment only)"
        meaning = setting.help + _secrecy(setting)
        lines.append(f"| `{setting.env}` | {option} | {_default_cell(setting)} | {_cell(meaning)} |")
    return "\n".join(lines)


def inputs_table() -> str:
    lines = [INPUTS_HEADER, "|---|---|---|---|"]
    for spec in INPUTS.values():
        setting = spec.setting
        if setting is None:
            default = f"`{spec.default}`" if spec.default is not None else ""
            lines.append(f"| `{spec.name}` | | {default} | {_cell(spec.description)} |")
            continue
        default = _default_cell(setting, setting.input_default)
        meaning = setting.help + (f". {setting.input_help}" if setting.input_help else "")
        lines.append(f"| `{spec.name}` | `{setting.env}` | {default} | {_cell(meaning)} |")
    return "\n".join(lines)


def table_after(text: str, header: str) -> str:
    """The Markdown table that starts with `header` in `text`."""
    start = text.index(header + "\n")
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    return "\n".join(lines)


def _input_yaml(spec: Input) -> str:
    body = textwrap.wrap(spec.description, width=110, break_long_words=False, break_on_hyphens=False)
    lines = [f"  {spec.name}:", "    description: >-", *(f"      {line}" for line in body), "    required: false"]
    if spec.default is not None:
        lines.append(
            f'    default: "{spec.default}"' if spec.default in ("true", "false") else f"    default: {spec.default}"
        )
    return "\n".join(lines)


def inputs_yaml() -> str:
    return "inputs:\n" + "\n".join(_input_yaml(spec) for spec in INPUTS.values()) + "\n"


def rendered_tables() -> list[tuple[Path, str, str]]:
    """Each file that holds a derived table: (file, the table's header, the table as the option table renders it)."""
    inputs = inputs_table()
    return [
        (SETTINGS_PAGE, SETTINGS_HEADER, settings_table()),
        (README, INPUTS_HEADER, inputs),
        (ACTION_PAGE, INPUTS_HEADER, inputs),
    ]


def rewrite() -> None:
    for path, header, table in rendered_tables():
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(table_after(text, header), table), encoding="utf-8")
    action = ACTION_YML.read_text(encoding="utf-8")
    action = re.sub(r"(?ms)^inputs:\n.*?(?=^\S)", lambda _match: inputs_yaml() + "\n", action, count=1)
    ACTION_YML.write_text(action, encoding="utf-8")


if __name__ == "__main__":
    rewrite()
    sys.exit(0)
