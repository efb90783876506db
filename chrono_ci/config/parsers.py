"""The parsers of setting values: each takes the raw text and the label to blame (the option or the variable the
user set), and returns the value or raises a ConfigError that names both."""

from __future__ import annotations

from chrono_ci.errors import ConfigError

UPLOAD_TARGETS = ("s3", "artifact")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_bool(raw: str, label: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{label}={raw!r} is not a boolean.",
        hint=f"Use one of: {', '.join(sorted(TRUE_WORDS | FALSE_WORDS))}.",
    )


def parse_positive_int(raw: str, label: str) -> int:
    text = raw.strip()
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or value < 1 or not text.lstrip("+").isdigit():
        raise ConfigError(
            f"{label}={raw!r} is not a positive whole number.",
            hint=f"Set {label} to a whole number of 1 or more, for example {label}=30.",
        )
    return value


def parse_choice(raw: str, label: str, choices: tuple[str, ...]) -> str:
    word = raw.strip().lower()
    if word not in choices:
        raise ConfigError(f"{label}={raw!r} is not one of {', '.join(choices)}.", hint=f"Set {label} to one of those.")
    return word


def parse_count(raw: str, label: str) -> int:
    """A whole number >= 0 (0 turns a GFS rule off)."""
    text = raw.strip()
    if not text.isdigit():
        raise ConfigError(
            f"{label}={raw!r} is not a whole number of 0 or more.",
            hint=f"Set {label} to a whole number, for example {label}=7 (0 turns the rule off).",
        )
    return int(text)


def parse_uploads(raw: str, label: str) -> tuple[str, ...]:
    words = [word.strip().lower() for word in raw.replace(" ", ",").split(",") if word.strip()]
    if words == ["none"]:
        return ()
    unknown = [word for word in words if word not in UPLOAD_TARGETS]
    if unknown or not words:
        raise ConfigError(
            f"{label}={raw!r}: unknown upload target {', '.join(unknown) or '(empty)'}.",
            hint="Use none, s3, artifact, or s3,artifact.",
        )
    return tuple(dict.fromkeys(words))


def parse_s3_url_setting(raw: str, label: str) -> str:
    from chrono_ci.storage.s3.config import parse_s3_url

    value = raw.strip()
    try:
        parse_s3_url(value)
    except ConfigError as error:
        raise ConfigError(f"{label}: {error.message}", hint=error.hint) from None
    return value
