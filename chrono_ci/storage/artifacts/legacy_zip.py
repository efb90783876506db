"""Artifacts in the zip form: earlier chrono-ci versions uploaded each archive as a zip holding it (version 4
artifacts), and the official clients zip whatever they upload unless told not to. chrono-ci now uploads an
archive as itself; this module is kept only to read those zips back: the one file inside, its damage reported
as such."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import IO, Any

from chrono_ci.errors import StorageError


class _ArchiveReader(io.BufferedIOBase):
    """The one file inside a downloaded artifact zip; closing it closes, and so removes, the spooled zip."""

    def __init__(self, spool: IO[bytes], archive: zipfile.ZipFile, member: IO[bytes], name: str) -> None:
        super().__init__()
        self._spool = spool
        self._archive = archive
        self._member = member
        self._name = name

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        return self._guard(lambda: self._member.read(-1 if size is None else size))

    def read1(self, size: int = -1, /) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._member.close()
                self._archive.close()
            finally:
                self._spool.close()
        super().close()

    def _guard(self, operation: Callable[[], bytes]) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        try:
            return operation()
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise StorageError(
                f"The artifact {self._name!r} is damaged: {exc}.",
                hint="Use another backup; this one cannot be trusted.",
            ) from exc


def open_single_file(spool: IO[bytes], artifact_name: str, key: str) -> _ArchiveReader:
    try:
        archive = zipfile.ZipFile(spool)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise StorageError(
            f"The artifact {artifact_name!r} is not a valid zip file: {exc}.",
            hint="Was it uploaded by chrono-ci? Use another backup.",
        ) from exc
    try:
        files = [info for info in archive.infolist() if not info.is_dir()]
        chosen = next((info for info in files if info.filename == key), None)
        if chosen is None and len(files) == 1:
            chosen = files[0]
        if chosen is None:
            raise StorageError(
                f"The artifact {artifact_name!r} holds {len(files)} files, not the one archive chrono-ci uploads.",
                hint="Was it uploaded by chrono-ci? Use another backup.",
            )
        member = archive.open(chosen)
    except BaseException:
        archive.close()
        raise
    return _ArchiveReader(spool, archive, member, artifact_name)
