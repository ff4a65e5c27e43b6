"""The stores ``bench_session_cache.py`` measures, behind one small interface (``Store``).

- ``SessionCache`` itself.
- The floor: raw ``sqlite3`` on one persistent connection, on a table with the ``session_cache``
  schema and the same pragmas (WAL, ``synchronous=NORMAL``). It does only what SQLite must: the
  upsert encodes the dict with orjson, the primary-key SELECT returns the row undecoded.
- redis-py against a Redis server; values orjson-encoded, as a Redis backend of the same contract
  would. ``incr`` is a bare ``INCR`` (no ``EXPIRE``): one round trip, the peer at its fastest.
- diskcache ``Cache``. It has no prefix delete; its idiom for deleting a group is a tag and ``evict``.
- cachetools ``TTLCache``: in-process only; ``get`` returns the stored object itself, no copy.
- The pre-migration design: a new ``sqlite3`` connection per operation with the WAL pragmas, JSON
  text values, ``INSERT OR REPLACE``; ``incr`` reads then replaces; prefix delete uses ``LIKE``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cachetools import TTLCache

from api.core.config import Settings
from api.core.session_cache import SCHEMA, UPSERT, SessionCache

# SessionCache runs with the production defaults: SESSION_CACHE_MAX_SIZE entries of L1, the default
# TTL and value-size limit, synchronous=NORMAL.
L1_SIZE: int = Settings.model_fields["session_cache_max_size"].default
TTL_SECONDS: float = Settings.model_fields["session_cache_ttl_seconds"].default
MAX_VALUE_BYTES: int = Settings.model_fields["session_cache_max_value_bytes"].default


@dataclass(frozen=True)
class Store:
    """The operations the benchmark times, bound to one store. ``fill`` and ``close`` are untimed."""

    get: Callable[[str], Any]
    set: Callable[[str, Any], Any]
    incr: Callable[[str], Any]
    delete: Callable[[str], Any]
    delete_prefix: Callable[[str], Any]
    fill: Callable[[Mapping[str, Any], str], None]  # items, and the prefix they share ("" if none)
    close: Callable[[], None]


def open_session_cache(path: Path, max_size: int = L1_SIZE) -> SessionCache:
    return SessionCache(
        path, max_size, default_ttl=TTL_SECONDS, max_value_bytes=MAX_VALUE_BYTES, synchronous="NORMAL"
    )


def session_cache_store(cache: SessionCache) -> Store:
    def fill(items: Mapping[str, Any], group: str) -> None:
        cache.set_many(items)

    return Store(cache.get, cache.set, cache.incr, cache.delete, cache.clear_pattern, fill, cache.close)


class RawSQLite:
    """The floor: what SQLite itself costs for each operation, on one autocommit connection."""

    SELECT = "SELECT kind, value, expires_at FROM session_cache WHERE key = ?1"
    INCREMENT = (
        "INSERT INTO session_cache (key, kind, value, expires_at) VALUES (?1, 2, 1, ?2) "
        "ON CONFLICT (key) DO UPDATE SET value = value + 1"
    )

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        # Processes opening a new file at once race to switch it to WAL, and SQLite answers the
        # losers "database is locked" at once, busy handler or not (as api.core.sqlite explains).
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self.connection.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self.connection.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self.connection.execute(statement)

    def get(self, key: str) -> Any:
        return self.connection.execute(self.SELECT, (key,)).fetchone()

    def set(self, key: str, value: Any) -> None:
        self.connection.execute(UPSERT, (key, 0, orjson.dumps(value), time.time() + TTL_SECONDS))

    def incr(self, key: str) -> None:
        self.connection.execute(self.INCREMENT, (key, time.time() + TTL_SECONDS))

    def delete(self, key: str) -> None:
        self.connection.execute("DELETE FROM session_cache WHERE key = ?1", (key,))

    def delete_prefix(self, prefix: str) -> None:
        # Prefixes here end in ":", so the range ends just before ";".
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        self.connection.execute("DELETE FROM session_cache WHERE key >= ?1 AND key < ?2", (prefix, upper))

    def fill(self, items: Mapping[str, Any], group: str) -> None:
        expires_at = time.time() + TTL_SECONDS
        rows = [(key, 0, orjson.dumps(value), expires_at) for key, value in items.items()]
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.executemany(UPSERT, rows)
        self.connection.execute("COMMIT")

    def store(self) -> Store:
        return Store(
            self.get, self.set, self.incr, self.delete, self.delete_prefix, self.fill, self.connection.close
        )


def connect_redis(url: str) -> tuple[Any, str | None]:
    """A redis-py client that answered PING, or ``None`` and why not."""
    try:
        import redis
    except ImportError:
        return None, "redis-py is not installed"
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=30.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        return None, f"{url}: {exc}"
    return client, None


def redis_store(client: Any, phase: str) -> Store:
    """redis-py on keys under a namespace of this process, all of which ``close`` removes."""
    namespace = f"ret-bench:{os.getpid()}:{phase}:"

    def get(key: str) -> Any:
        payload = client.get(namespace + key)
        return None if payload is None else orjson.loads(payload)

    def fill(items: Mapping[str, Any], group: str) -> None:
        with client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(namespace + key, orjson.dumps(value), ex=int(TTL_SECONDS))
            pipe.execute()

    def delete_prefix(prefix: str) -> None:
        # SCAN + UNLINK: how Redis deletes by prefix (KEYS would block the server).
        doomed = list(client.scan_iter(match=_glob_literal(namespace + prefix) + "*", count=1000))
        for start in range(0, len(doomed), 1000):
            client.unlink(*doomed[start : start + 1000])

    return Store(
        get=get,
        set=lambda key, value: client.set(namespace + key, orjson.dumps(value), ex=int(TTL_SECONDS)),
        incr=lambda key: client.incr(namespace + key),
        delete=lambda key: client.delete(namespace + key),
        delete_prefix=delete_prefix,
        fill=fill,
        close=lambda: delete_prefix(""),
    )


def _glob_literal(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def diskcache_store(directory: Path, *, tagged: bool = False) -> Store:
    """diskcache; ``tagged`` adds the tag index its group deletion (``evict``) needs."""
    import diskcache

    cache = diskcache.Cache(str(directory), tag_index=tagged)

    def fill(items: Mapping[str, Any], group: str) -> None:
        with cache.transact():
            for key, value in items.items():
                cache.set(key, value, expire=TTL_SECONDS, tag=group or None)

    return Store(
        get=cache.get,
        set=lambda key, value: cache.set(key, value, expire=TTL_SECONDS),
        incr=cache.incr,
        delete=cache.delete,
        delete_prefix=cache.evict,  # by tag: ``fill`` tags every key with its group's prefix
        fill=fill,
        close=cache.close,
    )


def ttlcache_store(max_size: int) -> Store:
    cache: TTLCache[str, Any] = TTLCache(max_size, TTL_SECONDS)

    def incr(key: str) -> int:
        value: int = cache.get(key, 0) + 1
        cache[key] = value
        return value

    def delete_prefix(prefix: str) -> None:
        for key in [key for key in cache if key.startswith(prefix)]:
            del cache[key]

    return Store(
        get=cache.get,
        set=cache.__setitem__,
        incr=incr,
        delete=lambda key: cache.pop(key, None),
        delete_prefix=delete_prefix,
        fill=lambda items, group: cache.update(items),
        close=cache.clear,
    )


class PreMigrationCache:
    """The design SessionCache replaces: every operation opens, configures and closes a connection.

    Closing the last connection to a WAL database checkpoints it, with fsyncs, and deletes the WAL:
    alone, every write pays for that. ``held_open`` keeps one more connection open, as another
    worker process would, so closes skip it; the design's writes then cost several times less.
    """

    SCHEMA = "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL)"
    REPLACE = "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)"

    def __init__(self, path: Path, *, held_open: bool = False) -> None:
        self.path = path
        with closing(self._connect()) as connection, connection:
            connection.execute(self.SCHEMA)
        self._held = self._connect() if held_open else None

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def get(self, key: str) -> Any:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT value, expires_at FROM cache WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row and row[1] > time.time() else None

    def set(self, key: str, value: Any) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(self.REPLACE, (key, json.dumps(value), time.time() + TTL_SECONDS))

    def incr(self, key: str) -> int:
        with closing(self._connect()) as connection, connection:
            row = connection.execute("SELECT value, expires_at FROM cache WHERE key = ?", (key,)).fetchone()
            value: int = (json.loads(row[0]) if row and row[1] > time.time() else 0) + 1
            connection.execute(self.REPLACE, (key, json.dumps(value), time.time() + TTL_SECONDS))
        return value

    def delete(self, key: str) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute("DELETE FROM cache WHERE key = ?", (key,))

    def delete_prefix(self, prefix: str) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(
                "DELETE FROM cache WHERE key LIKE ? ESCAPE '\\'", (_like_literal(prefix) + "%",)
            )

    def fill(self, items: Mapping[str, Any], group: str) -> None:
        expires_at = time.time() + TTL_SECONDS
        rows = [(key, json.dumps(value), expires_at) for key, value in items.items()]
        with closing(self._connect()) as connection, connection:
            connection.executemany(self.REPLACE, rows)

    def close(self) -> None:
        if self._held is not None:
            self._held.close()

    def store(self) -> Store:
        return Store(self.get, self.set, self.incr, self.delete, self.delete_prefix, self.fill, self.close)


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
