"""Building ZIP archives for tests, hostile ones included."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

Member = tuple[str | zipfile.ZipInfo, bytes]


def zip_bytes(members: Iterable[Member], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def write_zip(path: Path, members: Iterable[Member], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path.write_bytes(zip_bytes(members, compression))
    return path


def symlink(name: str, target: str) -> Member:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode bits in external_attr count
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def nested(depth: int, leaf: bytes = b"<r><book><t>deep</t></book></r>") -> bytes:
    """A ZIP nested ``depth`` levels deep (1: a plain ZIP holding ``leaf.xml``)."""
    data = zip_bytes([("leaf.xml", leaf)])
    for level in range(2, depth + 1):
        data = zip_bytes([(f"level{level}.zip", data)])
    return data


def lying_sizes(data: bytes, claimed_size: int) -> bytes:
    """``data`` (a one-member ZIP) with the member's uncompressed size in both headers replaced by
    ``claimed_size``, as a zip bomb hiding its size would."""
    patched = bytearray(data)
    local = patched.find(b"PK\x03\x04")
    struct.pack_into("<L", patched, local + 22, claimed_size)
    central = patched.find(b"PK\x01\x02")
    struct.pack_into("<L", patched, central + 24, claimed_size)
    return bytes(patched)


def marked_encrypted(data: bytes) -> bytes:
    """``data`` (a one-member ZIP) with the member flagged as encrypted in both headers."""
    patched = bytearray(data)
    local = patched.find(b"PK\x03\x04")
    patched[local + 6] |= 0x1
    central = patched.find(b"PK\x01\x02")
    patched[central + 8] |= 0x1
    return bytes(patched)


def many_entries(count: int) -> bytes:
    """A ZIP of ``count`` empty stored entries (fast to build)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(f"e{index}.xml", b"")
    return buffer.getvalue()
