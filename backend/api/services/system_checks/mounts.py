"""The mount table (``/proc/mounts``): which filesystem holds a path, and whether it is a network one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MOUNTS_FILE: Final = Path("/proc/mounts")
# Filesystems reached over a network: SQLite's WAL shared memory and locks are not safe on them.
NETWORK_FILESYSTEMS: Final = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smbfs", "smb3", "ncpfs", "9p", "afs", "coda", "ceph",
        "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "sshfs", "fuse.sshfs", "fuse.glusterfs",
        "fuse.cephfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.davfs2", "fuse.juicefs",
    }
)  # fmt: skip
# /proc/mounts escapes space, tab, newline and backslash in paths as three octal digits.
OCTAL_ESCAPE: Final = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    source: str
    point: Path
    fs_type: str

    @property
    def is_network(self) -> bool:
        return self.fs_type.lower() in NETWORK_FILESYSTEMS


def read_mounts(mounts_file: Path = MOUNTS_FILE) -> list[Mount] | None:
    """The mounts listed in ``mounts_file``, or None when it cannot be read."""
    try:
        text = mounts_file.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    return parse_mounts(text)


def parse_mounts(text: str) -> list[Mount]:
    """Parse lines of ``source mount-point fs-type options dump pass``; malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append(Mount(_unescape(fields[0]), Path(_unescape(fields[1])), fields[2]))
    return mounts


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount holding absolute ``path``: the longest mount point that contains it (the last one
    mounted there when several share the point, as the kernel stacks them)."""
    best: Mount | None = None
    for mount in mounts:
        if path.is_relative_to(mount.point) and (
            best is None or len(mount.point.parts) >= len(best.point.parts)
        ):
            best = mount
    return best


def _unescape(field: str) -> str:
    return OCTAL_ESCAPE.sub(lambda match: chr(int(match[1], 8)), field)
