"""The runtime root: writable by an actual write, room left on its disk, on a local filesystem."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

from api.core.config import SQLITE_URL_PREFIX, Settings
from api.services.health_service import check_directory_writable
from api.services.system_checks.base import CheckFailed
from api.services.system_checks.mounts import MOUNTS_FILE, Mount, mount_of, read_mounts

GIB: Final = 1024**3
# The least free space under the runtime root: room for one conversion at its extraction limit
# (MAX_TOTAL_BYTES), and never less than this floor.
MIN_FREE_BYTES: Final = 1 * GIB

DirectoryProbe = Callable[[Path], None]


class DiskUsage(Protocol):
    """What ``shutil.disk_usage`` answers; only ``free`` is read."""

    @property
    def free(self) -> int: ...


def check_runtime_root(settings: Settings, probe: DirectoryProbe = check_directory_writable) -> str:
    """The root exists (created if missing, as the API does at start) and takes a real write.

    ``probe`` writes, fsyncs and removes a scratch file (permission bits are not consulted: root
    ignores them, a read-only mount does not).
    """
    root = settings.ret_runtime_root
    existed = root.is_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe(root)
    except OSError as exc:
        raise CheckFailed(unwritable_directory("RET_RUNTIME_ROOT", root, exc)) from exc
    return f"{root} {'is' if existed else 'created and'} writable (a scratch file was written and removed)"


def unwritable_directory(setting: str, directory: Path, exc: OSError) -> str:
    """What is wrong with ``directory`` (named by or holding ``setting``) and what to do, from the
    error a real write raised."""
    where = f"{directory} ({setting})"
    if exc.errno == errno.EROFS:
        return (
            f"{where} is on a read-only filesystem: remount it read-write or point {setting} at a "
            "writable local directory"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{where} refused a write ({exc.strerror}): give the service user write access"
    if isinstance(exc, (FileExistsError, NotADirectoryError)) or exc.errno == errno.ENOTDIR:
        return f"{where} is not a directory (a file is in the way): move it or change {setting}"
    return f"{where} cannot be written: {exc}"


def check_disk_space(settings: Settings, usage: Callable[[Path], DiskUsage] = shutil.disk_usage) -> str:
    root = settings.ret_runtime_root
    free = usage(existing_ancestor(root)).free
    needed = required_free_bytes(settings)
    if free < needed:
        raise CheckFailed(
            f"{_gib(free)} free under {root}, less than {_gib(needed)} (one conversion at "
            "MAX_TOTAL_BYTES): free space on that disk or move RET_RUNTIME_ROOT to a larger one"
        )
    return f"{_gib(free)} free under {root} (at least {_gib(needed)} needed)"


def required_free_bytes(settings: Settings) -> int:
    return max(MIN_FREE_BYTES, settings.max_total_bytes)


def check_local_filesystem(settings: Settings, mounts_file: Path = MOUNTS_FILE) -> str:
    """Neither the runtime root nor an SQLite store lives on a network filesystem (WAL needs
    shared memory on one host)."""
    mounts = read_mounts(mounts_file)
    if mounts is None:
        return f"not checked: {mounts_file} cannot be read (not Linux?)"
    found = {
        setting: mount_of(existing_ancestor(path).resolve(), mounts) for setting, path in _paths(settings)
    }
    remote = {setting: mount for setting, mount in found.items() if mount is not None and mount.is_network}
    if remote:
        named = "; ".join(f"{setting} is on {_describe(mount)}" for setting, mount in remote.items())
        raise CheckFailed(f"{named}: SQLite in WAL mode needs a local disk; move them to one")
    kinds = sorted({mount.fs_type for mount in found.values() if mount is not None})
    return f"local filesystems only ({', '.join(kinds) or 'unknown'})"


def _paths(settings: Settings) -> list[tuple[str, Path]]:
    paths = [("RET_RUNTIME_ROOT", settings.ret_runtime_root)]
    if settings.ret_session_backend == "sqlite":
        paths.append(("RET_SESSION_DB", settings.ret_session_db))
    if settings.database_url.startswith(SQLITE_URL_PREFIX):
        paths.append(("DATABASE_URL", Path(settings.database_url.removeprefix(SQLITE_URL_PREFIX))))
    return paths


def _mount_holding(path: Path, mounts: list[Mount]) -> Mount | None:
    return mount_of(existing_ancestor(path).resolve(), mounts)


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a path about to be created lives there)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _describe(mount: Mount) -> str:
    return f"{mount.fs_type} ({mount.source} mounted at {mount.point})"


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"
