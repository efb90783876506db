"""What an artifact's bytes are, as the service and the download clients see them: the media type an archive is
uploaded with (CreateArtifact's mime_type and the blob's content type), and which downloads are zips.

The toolkit (@actions/artifact 6.x, upload/types.ts) picks the type from the file's last extension and falls back
to application/octet-stream; its table has no `.zst`, for which the registered type (RFC 8878) is given here.
"""

from __future__ import annotations

# By the name's last extension; `.age` (ciphertext) and `.sql` get the fallback.
_BY_EXTENSION = {
    ".zst": "application/zstd",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}
FALLBACK = "application/octet-stream"
# The download clients unzip on these (download-artifact.ts), and @actions/artifact 2.x stored a bare "zip".
_ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/zip-compressed", "zip"})


def media_type_for(name: str) -> str:
    dot = name.rfind(".")
    return _BY_EXTENSION.get(name[dot:].lower(), FALLBACK) if dot > 0 else FALLBACK


def is_zip(content_type: str | None, url_path: str) -> bool:
    """Whether a download is a zip, by the rule the official download client follows: its Content-Type, or a
    URL path ending in .zip."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type in _ZIP_TYPES or url_path.lower().endswith(".zip")
