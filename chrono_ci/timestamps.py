"""Instants as chrono-ci writes and reads them: ISO 8601 in UTC with a Z (`2026-11-25T02:00:00.123456Z`), the one
formatter and the one parser of every time in a record, an object's metadata, a result document or a service's
answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

_BEYOND_MICROSECONDS = re.compile(r"(\.\d{6})\d+")


def iso_z(moment: datetime) -> str:
    """`moment` in UTC, ISO 8601, with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_instant(value: object, *, naive: tzinfo | None = None) -> datetime | None:
    """An ISO 8601 time with a time zone, or None for anything else (a value from storage is untrusted).

    `naive` is the zone a time without one is taken to be in; without it, such a time is None. Fractions beyond
    microseconds (protobuf timestamps carry nanoseconds) are cut to what datetime keeps.
    """
    if not isinstance(value, str):
        return None
    text = _BEYOND_MICROSECONDS.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=naive) if naive is not None else None
    return moment
