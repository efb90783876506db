"""The one grammar of setting values: booleans, whole numbers, seconds, durations, choices and lists.

Each parser takes the raw text and the label to blame, and returns the value or raises a ConfigError that names
both. A label is what the user set: a variable or an option (`MAX_BACKUPS='x' is not ...`, as a shell writes it),
or an Action input (`Input max-backups: 'x' is not ...`, as a workflow log reads it). The option table
(chrono_ci/config/options.py) says which parser each setting takes; settings, the command's options and the
Action's inputs all go through these.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from chrono_ci.errors import ConfigError

INPUT_PREFIX = "Input "


def shown(label: str, raw: str) -> str:
    """`NAME='value'` for a variable or an option, `Input NAME: 'value'` for an Action input."""
    return f"{label}: {raw!r}" if label.startswith(INPUT_PREFIX) else f"{label}={raw!r}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


@dataclass(frozen=True)
class Booleans:
    """The words that mean true and false in one place."""

    true: tuple[str, ...]
    false: tuple[str, ...]
    exact: bool  # False: any letter case

    def hint(self) -> str:
        return ", ".join(sorted(self.true + self.false)) if not self.exact else " | ".join(self.true + self.false)


# Variables and options take the words a shell script writes, in any case. Action inputs take only YAML 1.2's core
# booleans, exactly as the toolkit's getBooleanInput does, so a workflow means the same with chrono-ci as with
# every other action (`keep-local: on` is an error there, not a surprise).
SETTING_BOOLEANS = Booleans(true=("1", "true", "yes", "on"), false=("0", "false", "no", "off"), exact=False)
INPUT_BOOLEANS = Booleans(true=("true", "True", "TRUE"), false=("false", "False", "FALSE"), exact=True)


def parse_bool(raw: str, label: str, words: Booleans = SETTING_BOOLEANS) -> bool:
    word = raw.strip() if words.exact else raw.strip().lower()
    if word in words.true:
        return True
    if word in words.false:
        return False
    hint = f"Use true or false (YAML 1.2: {words.hint()})." if words.exact else f"Use one of: {words.hint()}."
    raise ConfigError(f"{shown(label, raw)} is not a boolean.", hint=hint)


def parse_whole(raw: str, label: str, minimum: int = 0) -> int:
    """A whole number of `minimum` or more, written in digits (a leading + is allowed)."""
    text = raw.strip().removeprefix("+")
    if not text.isdigit() or not text.isascii() or int(text) < minimum:
        example = max(minimum, 7)
        raise ConfigError(
            f"{shown(label, raw)} is not a whole number of {minimum} or more.",
            hint=f"Set {_name(label)} to a whole number such as {example}"
            + (" (0 turns the rule off)." if minimum == 0 else ", or leave it out."),
        )
    return int(text)


def parse_positive_int(raw: str, label: str) -> int:
    return parse_whole(raw, label, 1)


def parse_count(raw: str, label: str) -> int:
    """A whole number >= 0 (0 turns a GFS rule off)."""
    return parse_whole(raw, label, 0)


def parse_seconds(raw: str, label: str, minimum: float = 0.1) -> float:
    """A number of seconds, decimals allowed, at least `minimum`."""
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not re.fullmatch(r"\+?\d+(\.\d+)?", text) or value < minimum:
        raise ConfigError(
            f"{shown(label, raw)} is not a number of seconds of {minimum:g} or more.",
            hint=f"Set {_name(label)} to a number of seconds such as 10 or 2.5.",
        )
    return value


def parse_choice(raw: str, label: str, choices: tuple[str, ...]) -> str:
    word = raw.strip().lower()
    if word not in choices:
        raise ConfigError(
            f"{shown(label, raw)} is not one of {', '.join(choices)}.",
            hint=f"Set {_name(label)} to one of those{did_you_mean(word, choices)}.",
        )
    return word


def parse_list(raw: str, label: str, choices: tuple[str, ...], none: str = "none") -> tuple[str, ...]:
    """Words from `choices`, separated by commas or spaces, each once; `none` alone is the empty list."""
    words = [word.lower() for word in raw.replace(",", " ").split()]
    bad = [word for word in words if word not in (none, *choices)]
    if bad or not words:
        listed = ", ".join(repr(word) for word in bad) or "''"
        raise ConfigError(
            f"{label}: {listed} is not one of {none}, {', '.join(choices)}.",
            hint=f"Give {none}, or one or more of {', '.join(choices)} separated by commas"
            f"{did_you_mean(bad[0], choices) if bad else ''}.",
        )
    if words == [none]:
        return ()
    if none in words:
        raise ConfigError(
            f"{label}: '{none}' cannot be combined with other targets ({raw!r}).",
            hint=f"Set {_name(label)} to {none}, or to the targets you want (for example {','.join(choices)}).",
        )
    return tuple(dict.fromkeys(words))


_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[wdhms])+")
_PART = re.compile(r"(\d+)([wdhms])")
_DURATION_HINT = "Write a whole number and a unit, or several: 26h, 90m, 7d, 1d12h (units: w, d, h, m, s)."


def parse_duration(text: str, label: str = "--max-age") -> timedelta:
    """'26h', '90m', '7d', '1d12h' -> timedelta; ConfigError naming `label` otherwise."""
    raw = text.strip().lower().replace(" ", "")
    if raw.isdigit():
        # A bare number is ambiguous (hours? seconds?); guessing wrong would make the check silently useless.
        raise ConfigError(
            f"{shown(label, text)} has no unit.", hint=f"Say which, for example {raw}h, {raw}m or {raw}d."
        )
    if not _DURATION.fullmatch(raw):
        raise ConfigError(f"{shown(label, text)} is not a duration.", hint=_DURATION_HINT)
    parts = _PART.findall(raw)
    units = [unit for _, unit in parts]
    repeated = sorted({unit for unit in units if units.count(unit) > 1})
    if repeated:
        raise ConfigError(f"{shown(label, text)} gives the unit {repeated[0]!r} twice.", hint=_DURATION_HINT)
    seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds == 0:
        raise ConfigError(f"{shown(label, text)} is zero: every backup would be too old.", hint=_DURATION_HINT)
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ConfigError(f"{shown(label, text)} is too long.", hint=_DURATION_HINT) from None


def parse_s3_url_setting(raw: str, label: str) -> str:
    from chrono_ci.storage.s3.config import parse_s3_url

    value = raw.strip()
    try:
        parse_s3_url(value)
    except ConfigError as error:
        raise ConfigError(f"{label}: {error.message}", hint=error.hint) from None
    return value


def _name(label: str) -> str:
    return label.removeprefix(INPUT_PREFIX)
