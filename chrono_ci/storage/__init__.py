"""Where archives live: one protocol, several backends, chosen from the URL here and nowhere else."""

from __future__ import annotations

import importlib
import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

from chrono_ci.errors import ConfigError
from chrono_ci.extras import require
from chrono_ci.storage.base import ObjectInfo, ObjectNotFound, Storage

__all__ = ["ObjectInfo", "ObjectNotFound", "Storage", "open_storage"]

_SCHEMES = ("file", "s3", "artifact")
_ACCEPTED = "a folder path, file:///absolute/path, s3://BUCKET[/PREFIX], artifact:// or artifact://NAME"


def open_storage(
    url: str, environ: Mapping[str, str] | None = None, warn: Callable[[str], None] | None = None
) -> Storage:
    """The backend for `url`: a folder, an S3 bucket or the workflow run's GitHub artifacts.

    Backends that need a network library are imported only when asked for, so that local runs start fast.
    `warn` gets the lines a remote store has to say along the way (each S3 retry).
    """
    env = os.environ if environ is None else environ
    if not url.strip():
        raise ConfigError("No backup location was given.", hint=f"Give {_ACCEPTED}.")
    scheme, separator, rest = url.partition("://")
    if not separator:
        if url.partition(":")[0].lower() in _SCHEMES:
            # `s3:/bucket` is a typo, not a folder named "s3:": writing backups there would go unnoticed.
            raise ConfigError("Malformed backup location: a scheme without ://.", hint=f"Give {_ACCEPTED}.")
        from chrono_ci.storage.local import LocalStorage

        return LocalStorage(Path(url).expanduser())
    scheme = scheme.lower()
    if scheme == "file":
        from chrono_ci.storage.local import LocalStorage

        return LocalStorage(_file_url_path(url))
    if scheme == "s3":
        require("s3")
        from chrono_ci.storage.s3.store import S3Storage

        return S3Storage.from_env(url, env, warn=warn)
    if scheme == "artifact":
        name = rest.strip("/") or None
        # Imported by name: the artifact backend pulls in an HTTP stack that local and S3 runs never need.
        artifacts = importlib.import_module("chrono_ci.storage.artifacts.store")
        storage: Storage = artifacts.ArtifactStorage.from_env(name, env)
        return storage
    raise ConfigError("Unknown backup location scheme (before ://) in the URL.", hint=f"Give {_ACCEPTED}.")


def _file_url_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            "The file:// URL names a remote host; file:// URLs can only point at this machine.",
            hint="Write file:///absolute/path (three slashes), or a plain folder path.",
        )
    path = urllib.parse.unquote(parts.path)
    if not path:
        raise ConfigError(
            "The file:// URL names no folder.", hint="Write file:///absolute/path, or a plain folder path."
        )
    return Path(path)
