"""The zip an artifact is: one STORED file, written front to back on the fly (so an upload never holds more than
one block), and read back from a downloaded zip, its damage reported as such."""

from __future__ import annotations

import io
import stat as stat_module
import struct
import zipfile
import zlib
from collections.abc import Callable
from datetime import datetime
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


class StoredZipWriter:
    """A zip of one STORED file, written front to back with no seeking, in a fixed layout.

    The size is unknown until the source ends and nothing already sent can be rewritten, so the entry uses a
    data descriptor and is always zip64: the code path of a 5 GiB archive is the one every small test runs.
    The name fields are padded to a fixed room with an extra field readers skip, which makes the zip exactly
    `_ZIP_OVERHEAD` bytes larger than the file it holds, whatever the file is called: `list` and `stat` can
    then give the archive's size from the size the service reports, without downloading anything.
    """

    def __init__(self, out: Callable[[bytes], None], name: str, when: datetime) -> None:
        self._out = out
        self._name = name.encode()
        self._flags = 0x0008 | (0x0800 if not name.isascii() else 0)
        self._dos_time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
        self._dos_date = ((max(when.year, 1980) - 1980) << 9) | (when.month << 5) | when.day
        self._crc = 0
        self.size = 0

    def start(self) -> None:
        self._out(
            struct.pack(
                "<IHHHHHIIIHH",
                _LOCAL_HEADER,
                _ZIP64_VERSION,
                self._flags,
                0,  # stored
                self._dos_time,
                self._dos_date,
                0,  # CRC and sizes follow the data, in the data descriptor
                _MAX32,
                _MAX32,
                len(self._name),
                _LOCAL_EXTRA + self._padding_size(),
            )
            + self._name
            + struct.pack("<HHQQ", _ZIP64_EXTRA, 16, 0, 0)
            + self._padding()
        )

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self.size += len(data)
        self._out(data)

    def finish(self) -> None:
        local_size = _LOCAL_FIXED + len(self._name) + _LOCAL_EXTRA + self._padding_size()
        directory_offset = local_size + self.size + _DESCRIPTOR_SIZE
        directory = (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                _CENTRAL_HEADER,
                (3 << 8) | _ZIP64_VERSION,  # made on Unix, so that the mode below counts
                _ZIP64_VERSION,
                self._flags,
                0,
                self._dos_time,
                self._dos_date,
                self._crc,
                _MAX32,
                _MAX32,
                len(self._name),
                _CENTRAL_EXTRA + self._padding_size(),
                0,  # comment
                0,  # disk
                0,  # internal attributes
                (stat_module.S_IFREG | 0o600) << 16,  # unzipped by hand, a backup stays private
                _MAX32,
            )
            + self._name
            + struct.pack("<HHQQQ", _ZIP64_EXTRA, 24, self.size, self.size, 0)
            + self._padding()
        )
        end64_offset = directory_offset + len(directory)
        self._out(
            struct.pack("<IIQQ", _DESCRIPTOR, self._crc, self.size, self.size)
            + directory
            + struct.pack(
                "<IQHHIIQQQQ",
                _END64,
                _END64_SIZE - 12,
                (3 << 8) | _ZIP64_VERSION,
                _ZIP64_VERSION,
                0,
                0,
                1,
                1,
                len(directory),
                directory_offset,
            )
            + struct.pack("<IIQI", _END64_LOCATOR, 0, end64_offset, 1)
            # The classic end record points readers (Go's, Windows') at the zip64 records.
            + struct.pack("<IHHHHIIH", _END, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, _MAX32, _MAX32, 0)
        )

    def _padding_size(self) -> int:
        return 4 + NAME_ROOM - len(self._name)

    def _padding(self) -> bytes:
        return struct.pack("<HH", _PADDING_EXTRA, NAME_ROOM - len(self._name)) + bytes(NAME_ROOM - len(self._name))


_LOCAL_HEADER, _DESCRIPTOR, _CENTRAL_HEADER = 0x04034B50, 0x08074B50, 0x02014B50
_END64, _END64_LOCATOR, _END = 0x06064B50, 0x07064B50, 0x06054B50
_ZIP64_VERSION = 45
_ZIP64_EXTRA = 0x0001
# Any id PKWARE has not assigned; readers skip extra fields they do not know.
_PADDING_EXTRA = 0x6370
_MAX32 = 0xFFFFFFFF
NAME_ROOM = 255  # bytes of file name, the longest most file systems allow
_LOCAL_FIXED, _CENTRAL_FIXED, _DESCRIPTOR_SIZE = 30, 46, 24
_LOCAL_EXTRA, _CENTRAL_EXTRA = 20, 28  # the zip64 extra fields
_END64_SIZE, _END64_LOCATOR_SIZE, _END_SIZE = 56, 20, 22
_ZIP_OVERHEAD = (
    (_LOCAL_FIXED + _LOCAL_EXTRA + 4 + NAME_ROOM)
    + _DESCRIPTOR_SIZE
    + (_CENTRAL_FIXED + _CENTRAL_EXTRA + 4 + NAME_ROOM)
    + _END64_SIZE
    + _END64_LOCATOR_SIZE
    + _END_SIZE
)


def archive_size(zip_size: int) -> int:
    # Exact for the zips this module writes; an artifact made by another tool gets its zip size.
    return zip_size - _ZIP_OVERHEAD if zip_size >= _ZIP_OVERHEAD else zip_size
