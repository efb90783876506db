"""The facts line at the top of a Supabase archive (`-- chrono-ci supabase archive {json}`): written by the dump,
read back by a restore to learn what the archive holds before replaying it."""

from __future__ import annotations

import contextlib
import json
import zlib
from pathlib import Path
from typing import Any

import zstandard

from chrono_ci.dump.supabase_sql import HEADER_SCAN

HEADER_MARK = "-- chrono-ci supabase archive "


def read_header(path: Path, compression: str) -> dict[str, Any] | None:
    """The facts line at the top of a Supabase archive, or None (another archive, or unreadable here)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(HEADER_SCAN)
        if compression == "zstd":
            text = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        elif compression == "gzip":
            text = zlib.decompressobj(31).decompress(raw, HEADER_SCAN)
        else:
            text = raw
    except (OSError, zstandard.ZstdError, zlib.error):
        return None
    first = text.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if not first.startswith(HEADER_MARK):
        return None
    with contextlib.suppress(ValueError):
        facts = json.loads(first[len(HEADER_MARK) :])
        return facts if isinstance(facts, dict) else None
    return None
