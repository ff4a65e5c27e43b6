"""SessionCache: an in-process LRU (L1) in front of SQLite (L2, the truth) — the store that replaces Redis.

- L2 is one table, ``session_cache``, in ``RET_SESSION_DB`` (WAL; ``RET_SESSION_DB_SYNCHRONOUS``
  NORMAL survives a killed process, FULL also a power loss). Every mutation is one autocommit
  statement or one ``BEGIN IMMEDIATE`` transaction, so it is atomic across threads and processes.
- L1 holds at most ``max_size`` recently read entries per process; evicting from it never touches L2.
  It stays exact across processes through the shared generation table (``api.core.coherence``).
- Expired entries are never returned; writes cull a bounded number of them and ``purge_expired()``
  sweeps the rest (the app runs it periodically).

The module also keeps one cache per process (``get_session_cache()``, rebuilt after ``fork()``) and the
convenience functions ``set_cache``, ``get_cache``, ``delete_cache`` and ``clear_cache_pattern``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from api.core import cache_codec as codec
from api.core.cache_contract import CacheBackend, SessionCacheError
from api.core.coherence import GenerationTable
from api.core.config import Settings, get_settings
from api.core.sqlite import (
    SQLiteStoreError,
    Synchronous,
    ThreadConnections,
    WrittenValue,
)

logger = logging.getLogger(__name__)

# Version 2 dropped the index on expires_at: it doubled the cost of every write, and expired rows
# are found by walking key windows instead (see _cull_window).
SCHEMA_VERSION: Final = 2
SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS session_cache (
        key TEXT PRIMARY KEY NOT NULL,
        kind INTEGER NOT NULL,
        value NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID""",
    "DROP INDEX IF EXISTS session_cache_expires_at",
)
SELECT_LIVE: Final = "SELECT kind, value, expires_at FROM session_cache WHERE key = ?1 AND expires_at > ?2"
UPSERT: Final = (
    "INSERT INTO session_cache (key, kind, value, expires_at) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, value = excluded.value, "
    "expires_at = excluded.expires_at"
)
# Redis INCR semantics. The common case, a live int that stays in range, is a plain UPDATE whose
# new value comes back through ret_cache_written() (a WrittenValue: cheaper than RETURNING).
# Otherwise INCR, in one statement: create, or restart an expired entry; a live non-int or an
# overflow matches no row, so RETURNING is empty and nothing changes.
WRITTEN_FUNCTION: Final = "ret_cache_written"
INCR_LIVE: Final = (
    "UPDATE session_cache SET value = ret_cache_written(value + ?2) "
    "WHERE key = ?1 AND kind = 2 AND expires_at > ?3 AND ("
    "(?2 >= 0 AND value <= 9223372036854775807 - ?2) OR "
    "(?2 < 0 AND value >= (-9223372036854775807 - 1) - ?2))"
)
INCR: Final = (
    "INSERT INTO session_cache (key, kind, value, expires_at) VALUES (?1, 2, ?2, ?3) "
    "ON CONFLICT (key) DO UPDATE SET "
    "value = CASE WHEN expires_at > ?4 THEN value + ?2 ELSE ?2 END, kind = 2, "
    "expires_at = CASE WHEN expires_at > ?4 THEN expires_at ELSE ?3 END "
    "WHERE expires_at <= ?4 OR (kind = 2 AND ("
    "(?2 >= 0 AND value <= 9223372036854775807 - ?2) OR "
    "(?2 < 0 AND value >= (-9223372036854775807 - 1) - ?2))) "
    "RETURNING value"
)
DELETE_ONE: Final = "DELETE FROM session_cache WHERE key = ?1 RETURNING expires_at"
TOUCH: Final = "UPDATE session_cache SET expires_at = ?1 WHERE key = ?2 AND expires_at > ?3"
# Expired rows are culled one window of keys at a time: find where the window ends, then delete the
# expired rows up to there. Both walk the primary key, so the cost is bounded by the window size.
WINDOW_END: Final = "SELECT key FROM session_cache WHERE key > ?1 ORDER BY key LIMIT 1 OFFSET ?2"
CULL_RANGE: Final = "DELETE FROM session_cache WHERE key > ?1 AND key <= ?2 AND expires_at <= ?3"
CULL_TAIL: Final = "DELETE FROM session_cache WHERE key > ?1 AND expires_at <= ?2"
COUNT_LIVE: Final = "SELECT COUNT(*) FROM session_cache WHERE expires_at > ?1"

# Culling on writes is bounded work, but not free: every Nth write looks at the next window of keys,
# so over a full pass of the table every expired row is found without a sweep.
CULL_EVERY_WRITES: Final = 16
CULL_WINDOW: Final = 256
PURGE_WINDOW: Final = 5000
# Above this many keys a prefix delete invalidates every L1 at once instead of key by key.
PER_KEY_INVALIDATION_LIMIT: Final = 64
GET_MANY_CHUNK: Final = 500


# An L1 entry: (expires_at, kind, payload, slot, generation, epoch). A plain tuple, not a
# NamedTuple: it is built on every L2 read and read on every L1 hit, where attribute access and
# construction through Python-level __new__ cost more than the read itself.
_L1Entry = tuple[float, int, codec.Payload, int, int, int]
# What a lookup yields: (expires_at, kind, payload), or an L1 entry (which starts the same way).
_Found = tuple[float, int, codec.Payload] | _L1Entry


class SessionCache:
    """Two-level key/value store with TTLs: L1 in-process LRU, L2 SQLite. See the module docstring.

    Args:
        db_path: SQLite file (default ``RET_SESSION_DB``); the generation table lives beside it.
        max_size: L1 entries per process (default ``SESSION_CACHE_MAX_SIZE``); 0 turns L1 off.
        default_ttl: seconds for entries set without a TTL (default ``SESSION_CACHE_TTL_SECONDS``).
        clock: wall-clock seconds; expiry times are absolute so every process must agree on it.
        max_value_bytes: largest encoded value (default ``SESSION_CACHE_MAX_VALUE_BYTES``).
        synchronous: ``NORMAL`` or ``FULL`` (default ``RET_SESSION_DB_SYNCHRONOUS``).

    Raises:
        SessionCacheError: the database cannot be created, opened, read or written; names the path.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        max_size: int | None = None,
        *,
        default_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
        max_value_bytes: int | None = None,
        synchronous: Synchronous | None = None,
    ) -> None:
        defaults = get_settings() if None in (db_path, max_size, default_ttl, max_value_bytes) else None
        self.path = Path(db_path if db_path is not None else _setting(defaults, "ret_session_db"))
        self.max_size = int(_setting(defaults, "session_cache_max_size") if max_size is None else max_size)
        if self.max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.default_ttl = codec.validate_default_ttl(
            default_ttl if default_ttl is not None else _setting(defaults, "session_cache_ttl_seconds")
        )
        self.max_value_bytes = int(
            _setting(defaults, "session_cache_max_value_bytes")
            if max_value_bytes is None
            else max_value_bytes
        )
        if self.max_value_bytes <= 0:
            raise ValueError("max_value_bytes must be > 0")
        self._clock = clock
        self._l1: OrderedDict[str, _L1Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(
            ("hits_l1", "hits_l2", "misses", "sets", "deletes", "l1_evictions", "expired_purged"), 0
        )
        self._writes = 0
        self._cull_cursor = ""
        mode: Synchronous = synchronous or (defaults.ret_session_db_synchronous if defaults else "NORMAL")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._written = WrittenValue(WRITTEN_FUNCTION)
            self._connections = ThreadConnections(
                self.path, mode, setup=self._written.register, checkpoints=True
            )
            self._migrate()
            self._generations = GenerationTable(self.path.with_name(self.path.name + "-gen"))
        except (OSError, sqlite3.Error, SQLiteStoreError, SessionCacheError) as exc:
            if hasattr(self, "_connections"):
                self._connections.close()
            if isinstance(exc, SessionCacheError):
                raise
            raise SessionCacheError(f"session cache database {self.path} is unusable: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.time) -> SessionCache:
        """Build from explicit settings (the app's lifespan and tests use this)."""
        return cls(
            settings.ret_session_db,
            settings.session_cache_max_size,
            default_ttl=settings.session_cache_ttl_seconds,
            clock=clock,
            max_value_bytes=settings.session_cache_max_value_bytes,
            synchronous=settings.ret_session_db_synchronous,
        )

    def _migrate(self) -> None:
        with self._connections.transaction() as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SessionCacheError(f"{self.path} has schema version {version}, newer than this code")
            for statement in SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        found = self._lookup(codec.validate_key(key), self._clock())
        return default if found is None else codec.decode(found[1], found[2])

    def exists(self, key: str) -> bool:
        return self._lookup(codec.validate_key(key), self._clock()) is not None

    def ttl(self, key: str) -> float | None:
        now = self._clock()
        found = self._lookup(codec.validate_key(key), now)
        return None if found is None else found[0] - now

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        now = self._clock()
        wanted = list(dict.fromkeys(codec.validate_key(key) for key in keys))
        found: dict[str, _Found] = {}
        missing = []
        for key in wanted:
            entry = self._l1_hit(key, now)
            if entry is None:
                missing.append(key)
            else:
                found[key] = entry
        for start in range(0, len(missing), GET_MANY_CHUNK):
            found.update(self._fetch_many(missing[start : start + GET_MANY_CHUNK], now))
        return {key: codec.decode(found[key][1], found[key][2]) for key in wanted if key in found}

    def keys(self, prefix: str = "") -> list[str]:
        low, high = _prefix_range(codec.validate_prefix(prefix))
        sql = "SELECT key FROM session_cache WHERE key >= ?1 AND expires_at > ?2"
        params: tuple[Any, ...] = (low, self._clock())
        if high is not None:
            sql, params = sql + " AND key < ?3", (*params, high)
        return [row[0] for row in self._execute(sql + " ORDER BY key", params)]

    def _lookup(self, key: str, now: float) -> _Found | None:
        if not self.max_size:
            return self._read_l2(key, now)
        entry = self._l1_hit(key, now)
        if entry is not None:
            return entry
        generations = self._generations
        slot = generations.slot_of(key)
        # Record the generations *before* reading L2 (see api.core.coherence).
        generation, epoch = generations.read(slot), generations.epoch()
        found = self._read_l2(key, now)
        if found is not None:
            self._l1_store(key, (*found, slot, generation, epoch))
        return found

    def _read_l2(self, key: str, now: float) -> _Found | None:
        row: tuple[int, codec.Payload, float] | None = self._execute(SELECT_LIVE, (key, now)).fetchone()
        with self._lock:
            self._counters["misses" if row is None else "hits_l2"] += 1
        return None if row is None else (row[2], row[0], row[1])

    def _fetch_many(self, keys: list[str], now: float) -> dict[str, _Found]:
        generations = self._generations
        slots = {key: generations.slot_of(key) for key in keys}
        recorded = {key: generations.read(slot) for key, slot in slots.items()}
        epoch = generations.epoch()
        marks = ", ".join("?" for _ in keys)
        # Only "?" placeholders are interpolated into the SQL.
        sql = f"SELECT key, kind, value, expires_at FROM session_cache WHERE key IN ({marks}) AND expires_at > ?"  # noqa: S608, E501
        found: dict[str, _Found] = {}
        for key, kind, payload, expires_at in self._execute(sql, (*keys, now)):
            found[key] = (expires_at, kind, payload)
            if self.max_size:
                self._l1_store(key, (expires_at, kind, payload, slots[key], recorded[key], epoch))
        with self._lock:
            self._counters["hits_l2"] += len(found)
            self._counters["misses"] += len(keys) - len(found)
        return found

    # -- L1 ----------------------------------------------------------------------------------

    def _l1_hit(self, key: str, now: float) -> _L1Entry | None:
        if not self.max_size:
            return None
        generations = self._generations
        with self._lock:
            entry = self._l1.get(key)
            if entry is None:
                return None
            if entry[0] > now and generations.read(entry[3]) == entry[4] and generations.epoch() == entry[5]:
                self._l1.move_to_end(key)
                self._counters["hits_l1"] += 1
                return entry
            del self._l1[key]
            return None

    def _l1_store(self, key: str, entry: _L1Entry) -> None:
        with self._lock:
            self._l1[key] = entry
            self._l1.move_to_end(key)
            while len(self._l1) > self.max_size:
                self._l1.popitem(last=False)
                self._counters["l1_evictions"] += 1

    def _count(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[counter] += amount

    def clear_local(self) -> None:
        with self._lock:
            self._l1.clear()

    # -- writes ------------------------------------------------------------------------------

    def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        codec.validate_key(key)
        kind, payload = codec.encode(value, self.max_value_bytes)
        now = self._clock()
        expires_at = codec.expiry_time(now, ttl_seconds, self.default_ttl)
        self._execute(UPSERT, (key, kind, payload, expires_at))
        self._after_write(key, "sets", now)

    def set_many(self, items: Mapping[str, Any], ttl_seconds: float | None = None) -> None:
        now = self._clock()
        expires_at = codec.expiry_time(now, ttl_seconds, self.default_ttl)
        rows = [
            (codec.validate_key(key), *codec.encode(value, self.max_value_bytes), expires_at)
            for key, value in items.items()
        ]
        if not rows:
            return
        try:
            with self._connections.transaction() as connection:
                connection.executemany(UPSERT, rows)
        except sqlite3.Error as exc:
            raise self._failure("set_many", exc) from exc
        except SQLiteStoreError as exc:
            raise SessionCacheError(str(exc)) from exc
        for row in rows:
            self._generations.bump(self._generations.slot_of(row[0]))
        self._connections.wrote(len(rows))
        self._count("sets", len(rows))
        self._maybe_cull(now)

    def incr(self, key: str, amount: int = 1, ttl_seconds: float | None = None) -> int:
        codec.validate_key(key)
        codec.validate_amount(amount)
        now = self._clock()
        expires_at = codec.expiry_time(now, ttl_seconds, self.default_ttl)
        result: int
        if self._execute(INCR_LIVE, (key, amount, now)).rowcount == 1:
            result = self._written.local.value
        else:
            row = self._execute(INCR, (key, amount, expires_at, now)).fetchone()
            if row is None:
                raise ValueError(self._incr_refusal(key, now))
            result = row[0]
        self._after_write(key, "sets", now)
        return result

    def _incr_refusal(self, key: str, now: float) -> str:
        row = self._execute(SELECT_LIVE, (key, now)).fetchone()
        if row is not None and row[0] == codec.KIND_INT:
            return f"incr on {key!r} would leave the signed 64-bit range"
        return f"incr on {key!r}: the stored value is not an integer"

    def touch(self, key: str, ttl_seconds: float | None = None) -> bool:
        codec.validate_key(key)
        now = self._clock()
        expires_at = codec.expiry_time(now, ttl_seconds, self.default_ttl)
        touched = self._execute(TOUCH, (expires_at, key, now)).rowcount > 0
        if touched:
            self._after_write(key, "sets", now)
        return touched

    def delete(self, key: str) -> bool:
        codec.validate_key(key)
        now = self._clock()
        row = self._execute(DELETE_ONE, (key,)).fetchone()
        if row is None:
            return False
        self._after_write(key, "deletes", now)
        return bool(row[0] > now)

    def clear_pattern(self, prefix: str) -> int:
        if not codec.validate_prefix(prefix):
            raise ValueError("clear_pattern needs a non-empty prefix; use clear() to remove everything")
        low, high = _prefix_range(prefix)
        now = self._clock()
        sql = "DELETE FROM session_cache WHERE key >= ?1"
        params: tuple[str, ...] = (low,)
        if high is not None:
            sql, params = sql + " AND key < ?2", (low, high)
        removed = self._execute(sql + " RETURNING key, expires_at", params).fetchall()
        if len(removed) > PER_KEY_INVALIDATION_LIMIT:
            # One epoch bump is cheaper than thousands of slot bumps; every L1 refills from L2.
            self._generations.bump_epoch()
            self.clear_local()
        else:
            with self._lock:
                for key, _ in removed:
                    self._generations.bump(self._generations.slot_of(key))
                    self._l1.pop(key, None)
        self._connections.wrote(len(removed))
        live = sum(1 for _, expires_at in removed if expires_at > now)
        self._count("deletes", live)
        return live

    def clear(self) -> None:
        removed = self._execute("DELETE FROM session_cache", ()).rowcount
        self._generations.bump_epoch()
        self._connections.wrote(max(removed, 1))
        self.clear_local()

    def purge_expired(self) -> int:
        """Delete every expired row, one window of keys per statement so writers are never held up long."""
        now = self._clock()
        total, cursor = 0, ""
        while True:
            removed, end = self._cull_window(cursor, PURGE_WINDOW, now)
            total += removed
            if end is None:
                break
            cursor = end
        self._count("expired_purged", total)
        return total

    def _cull_window(self, after: str, window: int, now: float) -> tuple[int, str | None]:
        """Delete the expired rows among the ``window`` keys after ``after``.

        Returns the rows removed and the last key of the window, or None when the window reached the
        end of the table. Expired rows need no L1 invalidation: any L1 copy has the same expiry.
        """
        row = self._execute(WINDOW_END, (after, window - 1)).fetchone()
        end: str | None = None if row is None else row[0]
        if end is None:
            removed: int = self._execute(CULL_TAIL, (after, now)).rowcount
        else:
            removed = self._execute(CULL_RANGE, (after, end, now)).rowcount
        self._connections.wrote(removed)  # deletions fill the WAL like any write
        return removed, end

    def _after_write(self, key: str, counter: str, now: float) -> None:
        # After the commit: bump the slot so every process's L1 copy is stale (including ours).
        self._generations.bump(self._generations.slot_of(key))
        self._connections.wrote()
        self._count(counter)
        self._maybe_cull(now)

    def _maybe_cull(self, now: float) -> None:
        self._writes += 1
        if self._writes % CULL_EVERY_WRITES == 0:
            culled, end = self._cull_window(self._cull_cursor, CULL_WINDOW, now)
            self._cull_cursor = end or ""
            if culled:
                self._count("expired_purged", culled)

    # -- plumbing ----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        entries = self._execute(COUNT_LIVE, (self._clock(),)).fetchone()[0]
        with self._lock:
            return {**self._counters, "l1_size": len(self._l1), "entries": entries}

    def close(self) -> None:
        self._connections.close()
        self._generations.close()
        self.clear_local()

    def _execute(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._connections.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._failure(sql.split(" ", 1)[0].lower(), exc) from exc
        except SQLiteStoreError as exc:
            raise SessionCacheError(str(exc)) from exc

    def _failure(self, operation: str, exc: sqlite3.Error) -> SessionCacheError:
        logger.error("session cache %s failed on %s: %s", operation, self.path, exc)
        return SessionCacheError(f"session cache {operation} failed on {self.path}: {exc}")


def _setting(settings: Settings | None, name: str) -> Any:
    assert settings is not None  # loaded whenever an argument was left out
    return getattr(settings, name)


def _prefix_range(prefix: str) -> tuple[str, str | None]:
    """Keys starting with ``prefix`` are exactly ``low <= key < high`` (``high`` None: no bound).

    SQLite compares TEXT bytewise in UTF-8, which orders like code points, so the bound is the
    prefix with its last character incremented. No LIKE/GLOB: ``%``, ``_`` and ``*`` stay literal.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            following = last + 1 if last + 1 != 0xD800 else 0xE000
            return prefix, "".join(chars) + chr(following)
    return prefix, None


# -- one cache per process -------------------------------------------------------------------

BACKENDS: Final[dict[str, Callable[[Settings], CacheBackend]]] = {}
_process_cache: CacheBackend | None = None
_process_lock = threading.Lock()


def build_cache(settings: Settings) -> CacheBackend:
    """The backend named by ``RET_SESSION_BACKEND``, built from ``settings``."""
    _register_backends()
    return BACKENDS[settings.ret_session_backend](settings)


def _register_backends() -> None:
    if BACKENDS:
        return
    from api.core.memory_cache import MemoryCache

    BACKENDS.update({"sqlite": SessionCache.from_settings, "memory": MemoryCache.from_settings})


def get_session_cache() -> CacheBackend:
    """This process's cache: the one the app installed, else one built from ``get_settings()``."""
    global _process_cache
    cache = _process_cache
    if cache is None:
        with _process_lock:
            if _process_cache is None:
                _process_cache = build_cache(get_settings())
            cache = _process_cache
    return cache


def install_session_cache(cache: CacheBackend | None) -> None:
    """Make ``cache`` this process's cache (the app's lifespan does); ``None`` forgets it."""
    global _process_cache
    with _process_lock:
        _process_cache = cache


def _forget_after_fork() -> None:
    # A child must never use the parent's connections: the next call builds a fresh cache.
    global _process_cache, _process_lock
    _process_cache = None
    _process_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def set_cache(key: str, value: Any, ttl_seconds: float | None = None) -> None:
    get_session_cache().set(key, value, ttl_seconds)


def get_cache(key: str, default: Any = None) -> Any:
    return get_session_cache().get(key, default)


def delete_cache(key: str) -> bool:
    return get_session_cache().delete(key)


def clear_cache_pattern(prefix: str) -> int:
    return get_session_cache().clear_pattern(prefix)
