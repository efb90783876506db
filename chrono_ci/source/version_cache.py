"""pg_dump's version per binary, remembered between runs.

Asking `pg_dump --version` starts a process per installation at every run (`chrono-ci --version` lists them all,
a backup picks one among them), yet a binary's version only changes when the file does. The answers are kept in a
small JSON file in the user's cache folder ($XDG_CACHE_HOME/chrono-ci, else ~/.cache/chrono-ci; folder 0700,
file 0600), each under the binary's real path, with its size and mtime_ns.

The file is a hint, never an authority. It is asked only about a binary already found on disk, and only for its
version string; an entry whose size or mtime differs from the file's is probed again; a version that is not
MAJOR.MINOR, a file that is corrupt, unreadable or owned by another user is ignored (and rewritten at the next
probe); a folder that cannot be written means no cache, silently. Which binary runs is never read from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FORMAT = 1
FILE_NAME = "pg-tools.json"
_VERSION = re.compile(r"\d{1,4}\.\d{1,4}")


def cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """$XDG_CACHE_HOME/chrono-ci, else ~/.cache/chrono-ci; None when neither can be named."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "").strip()
    if base and os.path.isabs(base):  # the XDG spec: a relative value is invalid and ignored
        return Path(base) / "chrono-ci"
    home = env.get("HOME", "").strip()
    if not home or not os.path.isabs(home):
        return None
    return Path(home) / ".cache" / "chrono-ci"


def _key(binary: Path) -> tuple[int, int] | None:
    try:
        stat = binary.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class VersionCache:
    """The cached versions, read once; `save()` writes them back only if a probe added or changed one."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._entries: dict[str, dict[str, Any]] = self._read()
        self._changed = False

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / FILE_NAME

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return {}
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return {}
        try:
            with os.fdopen(fd, "rb") as handle:
                if os.fstat(handle.fileno()).st_uid != os.geteuid():
                    return {}  # planted by someone else (a shared XDG_CACHE_HOME): not ours to believe
                document = json.loads(handle.read(1 << 20))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            return {}
        entries = document.get("pg_dump")
        if not isinstance(entries, dict):
            return {}
        return {path: entry for path, entry in entries.items() if isinstance(entry, dict)}

    def version(self, binary: Path) -> str | None:
        """The cached version of `binary` (a real path), if its entry matches the file as it is now."""
        entry = self._entries.get(str(binary))
        key = _key(binary)
        if entry is None or key is None:
            return None
        version = entry.get("version")
        if (entry.get("size"), entry.get("mtime_ns")) != key or not isinstance(version, str):
            return None
        return version if _VERSION.fullmatch(version) else None

    def remember(self, binary: Path, version: str) -> None:
        key = _key(binary)
        if key is None:
            return
        self._entries[str(binary)] = {"size": key[0], "mtime_ns": key[1], "version": version}
        self._changed = True

    def save(self) -> None:
        """Write the entries back (atomically, 0600), forgetting binaries that are gone. Any failure: no cache."""
        if not self._changed or self.folder is None:
            return
        self._changed = False
        entries = {path: entry for path, entry in self._entries.items() if os.path.exists(path)}
        document = json.dumps({"format": FORMAT, "pg_dump": entries}, indent=1, sort_keys=True)
        with contextlib.suppress(OSError):
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Written aside and renamed over, so that a reader never sees half a file; O_EXCL and O_NOFOLLOW so
            # that a name planted in the folder is never written through.
            temporary = self.folder / f".{FILE_NAME}.{os.getpid()}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(document)
                os.replace(temporary, self.folder / FILE_NAME)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
