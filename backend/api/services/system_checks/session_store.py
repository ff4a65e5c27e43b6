"""The session store (``RET_SESSION_DB``): a full round trip on throwaway keys, and its SQLite pragmas."""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Final

from api.core.cache_contract import CacheBackend
from api.core.config import Settings
from api.core.memory_cache import MemoryCache
from api.core.session_cache import SessionCache
from api.core.sqlite import BUSY_TIMEOUT_SECONDS, SQLiteStoreError, open_connection
from api.services.health_service import check_directory_writable
from api.services.system_checks.base import CheckFailed
from api.services.system_checks.filesystem import unwritable_directory

# The stores use RETURNING (SQLite 3.35) and upserts (3.24).
MIN_SQLITE_VERSION: Final = (3, 35, 0)
SYNCHRONOUS_LEVELS: Final = {"NORMAL": 1, "FULL": 2}
EXPECTED_BUSY_TIMEOUT_MS: Final = round(BUSY_TIMEOUT_SECONDS * 1000)
STORE_ADVICE: Final = (
    "make RET_SESSION_DB a writable SQLite file on a local disk (a damaged file can be moved aside: "
    "the API creates a new one, losing only ephemeral state)"
)
BACKENDS: Final[dict[str, Callable[[Settings, Callable[[], float]], CacheBackend]]] = {
    "sqlite": SessionCache.from_settings,
    "memory": MemoryCache.from_settings,
}


class SteppedClock:
    """Wall-clock time plus an offset, so expiry is checked without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def __call__(self) -> float:
        return time.time() + self.offset


def check_session_store(settings: Settings) -> str:
    """Write, read, expire, delete and prefix-clear throwaway keys on the configured store; leave none."""
    created = settings.ret_session_backend == "sqlite" and _prepare_database_file(settings)
    clock = SteppedClock()
    try:
        cache = BACKENDS[settings.ret_session_backend](settings, clock)
    except Exception as exc:
        raise CheckFailed(f"{exc}: {STORE_ADVICE}") from exc
    prefix = f"validate:{uuid.uuid4().hex}:"
    try:
        _round_trip(cache, prefix, clock)
        _clear(cache, prefix)
    except CheckFailed:
        raise
    except Exception as exc:
        raise CheckFailed(f"{exc}: {STORE_ADVICE}") from exc
    finally:
        _close_quietly(cache, prefix)
    where = settings.ret_session_db if settings.ret_session_backend == "sqlite" else "memory (nothing kept)"
    return f"read/write/TTL/delete/prefix clear on {where}{' (new file)' if created else ''}; no key left"


def _prepare_database_file(settings: Settings) -> bool:
    """Refuse a directory in the file's place; before creating a new file, prove its directory takes
    a real write (so nothing is attempted in a read-only place). Returns True when the file is new."""
    path = settings.ret_session_db
    if path.is_dir():
        raise CheckFailed(f"RET_SESSION_DB {path} is a directory: point RET_SESSION_DB at a file")
    if path.exists():
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_directory_writable(path.parent)
    except OSError as exc:
        reason = unwritable_directory("RET_SESSION_DB", path.parent, exc)
        raise CheckFailed(f"{path} does not exist and cannot be created: {reason}") from exc
    return True


def _round_trip(cache: CacheBackend, prefix: str, clock: SteppedClock) -> None:
    cache.set(prefix + "value", {"ok": True}, ttl_seconds=60)
    cache.set(prefix + "short", "expires", ttl_seconds=1)
    if cache.get(prefix + "value") != {"ok": True}:
        raise CheckFailed("a value written could not be read back: the store loses writes")
    remaining = cache.ttl(prefix + "value")
    if remaining is None or not 0 < remaining <= 60:
        raise CheckFailed(f"a 60 s entry reports {remaining} s left: check the server clock")
    clock.advance(2)
    if cache.get(prefix + "short") is not None:
        raise CheckFailed("an expired entry was returned: check the server clock")
    if not cache.delete(prefix + "value"):
        raise CheckFailed("delete did not find the entry just written")
    cache.set_many({prefix + "a": 1, prefix + "b": 2})


def _clear(cache: CacheBackend, prefix: str) -> None:
    removed = cache.clear_pattern(prefix)
    if removed != 2 or cache.keys(prefix):
        raise CheckFailed(f"prefix clear removed {removed} of 2 entries and left {cache.keys(prefix)}")


def _close_quietly(cache: CacheBackend, prefix: str) -> None:
    # After a failure the store may refuse this too; the first error is the one to report.
    with contextlib.suppress(Exception):
        cache.clear_pattern(prefix)
    cache.close()


def check_sqlite_pragmas(settings: Settings) -> str:
    """SQLite is new enough; the session DB opens as the stores open it: WAL, a busy timeout, and
    ``synchronous`` as ``RET_SESSION_DB_SYNCHRONOUS`` says."""
    version = sqlite3.sqlite_version
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        needed = ".".join(map(str, MIN_SQLITE_VERSION))
        raise CheckFailed(f"SQLite {version} is older than {needed}: use a Python built with a newer SQLite")
    if settings.ret_session_backend != "sqlite":
        return f"SQLite {version}; RET_SESSION_BACKEND={settings.ret_session_backend} uses no database file"
    pragmas = _read_pragmas(settings)
    problems = _pragma_problems(pragmas, settings.ret_session_db_synchronous)
    if problems:
        raise CheckFailed(f"{settings.ret_session_db}: {'; '.join(problems)}")
    journal, busy_ms, synchronous = pragmas
    return (
        f"SQLite {version}; {settings.ret_session_db.name}: journal_mode={journal}, "
        f"busy_timeout={busy_ms} ms, synchronous={settings.ret_session_db_synchronous} ({synchronous})"
    )


def _read_pragmas(settings: Settings) -> tuple[str, int, int]:
    path = settings.ret_session_db
    if not path.is_file():
        raise CheckFailed(f"{path} does not exist: see the session store check")
    try:
        connection = open_connection(path, settings.ret_session_db_synchronous)
    except SQLiteStoreError as exc:
        raise CheckFailed(f"{exc}: {STORE_ADVICE}") from exc
    try:
        return (
            str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower(),
            int(connection.execute("PRAGMA busy_timeout").fetchone()[0]),
            int(connection.execute("PRAGMA synchronous").fetchone()[0]),
        )
    finally:
        connection.close()


def _pragma_problems(pragmas: tuple[str, int, int], configured: str) -> list[str]:
    journal, busy_ms, synchronous = pragmas
    problems = []
    if journal != "wal":
        problems.append(f"journal_mode is {journal}, not wal: put the file on a local disk")
    if busy_ms < EXPECTED_BUSY_TIMEOUT_MS:
        problems.append(f"busy_timeout is {busy_ms} ms, below {EXPECTED_BUSY_TIMEOUT_MS} ms")
    if synchronous != SYNCHRONOUS_LEVELS[configured]:
        problems.append(
            f"synchronous is {synchronous}, not {configured} ({SYNCHRONOUS_LEVELS[configured]}) "
            "as RET_SESSION_DB_SYNCHRONOUS says"
        )
    return problems
