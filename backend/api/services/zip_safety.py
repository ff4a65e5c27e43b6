"""The hostile-ZIP defences: where a member may land, links, the entry count, and bounded copying.

- ``MemberPaths`` is the one place that builds a path below an extraction directory. It refuses
  absolute names, drive letters, ``..`` and names that resolve outside the directory; backslashes
  count as separators (so ``..\\..\\x`` is refused, not written as a strange file name), and every
  component is made a safe file name.
- ``count_entries`` walks the central directory itself, stopping at the limit, so an archive of a
  million tiny entries is refused before ``zipfile`` builds a million ``ZipInfo`` objects.
- ``copy_member`` enforces the byte limits on what is actually decompressed and written, whatever
  the headers claim.
"""

from __future__ import annotations

import hashlib
import re
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Final

from api.services import filenames

COPY_CHUNK: Final = 256 * 1024
# The compression ratio is only judged past this many bytes: tiny, repetitive files compress very
# well (a 2 KB run of spaces deflates to a few bytes) without being bombs.
RATIO_GRACE_BYTES: Final = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_MAX_EOCD_SEARCH = _EOCD.size + 65535


class UnsafeMemberError(ValueError):
    """A member name that would leave its directory (the message says why)."""


class LimitExceededError(Exception):
    """A scan limit was reached; ``setting`` names it (``MAX_TOTAL_BYTES``, ...)."""

    def __init__(self, setting: str, limit: float, detail: str) -> None:
        super().__init__(f"{detail} ({setting}={limit:g})")
        self.setting = setting
        self.limit = limit


@dataclass(slots=True)
class CopyLimits:
    max_file_bytes: int
    max_ratio: float


class MemberPaths:
    """Paths below one extraction directory: the one place that builds them.

    A path is made of the member name's components, each made a safe file name, and its directory
    is checked to resolve inside ``directory`` (once per directory: nothing here creates links, so
    a directory that was inside stays inside).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._root = directory.resolve()
        # Directories checked, as components: a PurePath's parent and hash cost ~2.5 µs each, paid
        # for every member of every archive.
        self._checked: set[tuple[str, ...]] = {()}

    def path(self, raw_name: str) -> Path:
        """Where member ``raw_name`` goes; never outside ``directory``.

        Raises:
            UnsafeMemberError: absolute, drive-lettered, ``..``, empty, or escaping after resolution.
        """
        name = raw_name.replace("\\", "/")
        if name.startswith("/") or _DRIVE.match(name):
            raise UnsafeMemberError(f"refused: {raw_name!r} is an absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise UnsafeMemberError(f"refused: {raw_name!r} climbs out of its directory")
        try:
            safe_parts = [part if _plain(part) else filenames.safe_filename(part) for part in parts]
        except filenames.UnsafeFilenameError as exc:
            raise UnsafeMemberError(f"refused: {raw_name!r} has an unusable name") from exc
        if not safe_parts:
            raise UnsafeMemberError(f"refused: {raw_name!r} has no name")
        parent = tuple(safe_parts[:-1])
        if parent not in self._checked:
            if not self.directory.joinpath(*parent).resolve().is_relative_to(self._root):
                raise UnsafeMemberError(f"refused: {raw_name!r} resolves outside its directory")
            self._checked.add(parent)
        return self.directory.joinpath(*safe_parts)

    def create(self, target: Path) -> tuple[Path, BinaryIO]:
        """Create ``target`` (or a numbered sibling, when sanitising made two names one) for
        writing; never replaces or follows anything that exists.

        Raises:
            OSError: the path clashes with a file or directory of another member.
        """
        try:
            return target, target.open("xb")
        except FileNotFoundError:  # the first member of a directory not made yet
            target.parent.mkdir(parents=True, exist_ok=True)
            return target, target.open("xb")
        except FileExistsError:
            taken = {entry.name for entry in target.parent.iterdir()}
            target = target.with_name(filenames.deduplicated(target.name, taken))
            return target, target.open("xb")


def _plain(part: str) -> bool:
    """Whether ``part`` is a name ``safe_filename`` would return unchanged, decided cheaply (most
    names in deposits are like this; the general rules cost ~20 µs a name)."""
    return (
        _PLAIN.fullmatch(part) is not None
        and part[-1] != "."
        and part.split(".", 1)[0].lower() not in filenames.WINDOWS_RESERVED
    )


def is_link(info: zipfile.ZipInfo) -> bool:
    """Whether the entry is a symbolic link (Unix mode bits in the external attributes)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def count_entries(handle: BinaryIO, limit: int) -> int:
    """The number of central-directory entries, counting at most ``limit + 1``.

    Raises:
        zipfile.BadZipFile: no end-of-central-directory record, or a damaged directory.
    """
    cd_offset, cd_size = _central_directory(handle)
    handle.seek(cd_offset)
    count = consumed = 0
    while consumed < cd_size and count <= limit:
        header = handle.read(_CENTRAL_HEADER.size)
        if len(header) < _CENTRAL_HEADER.size or header[:4] != b"PK\x01\x02":
            raise zipfile.BadZipFile("the central directory is damaged")
        fields = _CENTRAL_HEADER.unpack(header)
        variable = fields[12] + fields[13] + fields[14]  # name, extra field and comment lengths
        handle.seek(variable, 1)
        consumed += _CENTRAL_HEADER.size + variable
        count += 1
    return count


def copy_member(
    source: IO[bytes],
    destination: IO[bytes] | None,
    compressed_size: int,
    limits: CopyLimits,
    charge: Callable[[int], None],
) -> tuple[int, str]:
    """Copy a member's decompressed bytes (``destination`` None: only read them); return (size,
    SHA-256 hex).

    ``charge(n)`` is called for every chunk before it is written (it raises at the total limit).

    Raises:
        LimitExceededError: the member passed ``max_file_bytes`` or ``max_ratio``.
    """
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(COPY_CHUNK):
        size += len(chunk)
        if size > limits.max_file_bytes:
            raise LimitExceededError("MAX_PER_FILE_BYTES", limits.max_file_bytes, "an entry is too large")
        if size > RATIO_GRACE_BYTES and size > limits.max_ratio * max(compressed_size, 1):
            raise LimitExceededError(
                "MAX_COMPRESSION_RATIO", limits.max_ratio, "an entry decompresses too far (a zip bomb?)"
            )
        charge(len(chunk))
        digest.update(chunk)
        if destination is not None:
            destination.write(chunk)
    return size, digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _central_directory(handle: BinaryIO) -> tuple[int, int]:
    """(offset, size) of the central directory, allowing for data prepended to the archive."""
    end = handle.seek(0, 2)
    handle.seek(max(0, end - _MAX_EOCD_SEARCH))
    tail = handle.read()
    position = tail.rfind(b"PK\x05\x06")
    if position < 0 or len(tail) - position < _EOCD.size:
        raise zipfile.BadZipFile("not a ZIP archive (no end of central directory)")
    eocd_at = end - len(tail) + position
    _, _, _, _, _, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, position)
    locator_at = position - _EOCD64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        _, _, record_at, _ = _EOCD64_LOCATOR.unpack_from(tail, locator_at)
        handle.seek(record_at)
        record = handle.read(_EOCD64.size)
        if len(record) < _EOCD64.size or record[:4] != b"PK\x06\x06":
            raise zipfile.BadZipFile("damaged ZIP64 end of central directory")
        cd_size, cd_offset = _EOCD64.unpack(record)[8:10]
        eocd_at = record_at
    start = eocd_at - cd_size  # like zipfile: tolerate bytes prepended to the archive
    if start < 0 or cd_offset > eocd_at:
        raise zipfile.BadZipFile("the central directory lies outside the archive")
    return start, cd_size
