"""MemoryCache: the session-cache contract in a dict, for tests. One process, nothing durable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from api.core import cache_codec as codec
from api.core.config import Settings

Entry = tuple[float, int, codec.Payload]  # expires_at, kind, payload


class MemoryCache:
    """Same semantics as ``SessionCache`` (see ``api.core.cache_contract``) without any storage."""

    def __init__(
        self,
        *,
        default_ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
        max_value_bytes: int = 1024 * 1024,
    ) -> None:
        self.default_ttl = codec.validate_default_ttl(default_ttl)
        self.max_value_bytes = max_value_bytes
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._lock = threading.RLock()
        # The same counter names as SessionCache; a dict has no L1, so those stay 0.
        self._counters = dict.fromkeys(
            ("hits_l1", "hits_l2", "misses", "sets", "deletes", "l1_evictions", "expired_purged"), 0
        )

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.time) -> MemoryCache:
        return cls(
            default_ttl=settings.session_cache_ttl_seconds,
            clock=clock,
            max_value_bytes=settings.session_cache_max_value_bytes,
        )

    def _live(self, key: str, now: float) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] <= now:
            del self._entries[key]
            self._counters["expired_purged"] += 1
            return None
        return entry

    def get(self, key: str, default: Any = None) -> Any:
        codec.validate_key(key)
        with self._lock:
            entry = self._live(key, self._clock())
            self._counters["hits_l2" if entry else "misses"] += 1
        return default if entry is None else codec.decode(entry[1], entry[2])

    def exists(self, key: str) -> bool:
        codec.validate_key(key)
        with self._lock:
            return self._live(key, self._clock()) is not None

    def ttl(self, key: str) -> float | None:
        codec.validate_key(key)
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
        return None if entry is None else entry[0] - now

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return {key: value for key in keys if (value := self.get(key, _MISSING)) is not _MISSING}

    def keys(self, prefix: str = "") -> list[str]:
        codec.validate_prefix(prefix)
        with self._lock:
            now = self._clock()
            return sorted(k for k, e in self._entries.items() if k.startswith(prefix) and e[0] > now)

    def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        self.set_many({key: value}, ttl_seconds)

    def set_many(self, items: Mapping[str, Any], ttl_seconds: float | None = None) -> None:
        now = self._clock()
        expires_at = codec.expiry_time(now, ttl_seconds, self.default_ttl)
        rows = {
            codec.validate_key(key): (expires_at, *codec.encode(value, self.max_value_bytes))
            for key, value in items.items()
        }
        for _, kind, payload in rows.values():
            if kind == codec.KIND_STR:
                str(payload).encode("utf-8")  # SQLite would refuse lone surrogates too
        with self._lock:
            self._entries.update(rows)
            self._counters["sets"] += len(rows)

    def incr(self, key: str, amount: int = 1, ttl_seconds: float | None = None) -> int:
        codec.validate_key(key)
        codec.validate_amount(amount)
        with self._lock:
            now = self._clock()
            entry = self._live(key, now)
            if entry is None:
                entry = (codec.expiry_time(now, ttl_seconds, self.default_ttl), codec.KIND_INT, 0)
            elif entry[1] != codec.KIND_INT:
                raise ValueError(f"incr on {key!r}: the stored value is not an integer")
            else:
                codec.expiry_time(now, ttl_seconds, self.default_ttl)  # validate even when unused
            result = int(entry[2]) + amount
            if not codec.INT64_MIN <= result <= codec.INT64_MAX:
                raise ValueError(f"incr on {key!r} would leave the signed 64-bit range")
            self._entries[key] = (entry[0], codec.KIND_INT, result)
            self._counters["sets"] += 1
            return result

    def touch(self, key: str, ttl_seconds: float | None = None) -> bool:
        codec.validate_key(key)
        with self._lock:
            now = self._clock()
            expires_at = codec.expiry_time(now, ttl_seconds, self.default_ttl)
            entry = self._live(key, now)
            if entry is None:
                return False
            self._entries[key] = (expires_at, entry[1], entry[2])
            return True

    def delete(self, key: str) -> bool:
        codec.validate_key(key)
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None:
                return False
            del self._entries[key]
            self._counters["deletes"] += 1
            return True

    def clear_pattern(self, prefix: str) -> int:
        if not codec.validate_prefix(prefix):
            raise ValueError("clear_pattern needs a non-empty prefix; use clear() to remove everything")
        with self._lock:
            now = self._clock()
            doomed = [key for key in self._entries if key.startswith(prefix)]
            live = sum(1 for key in doomed if self._entries[key][0] > now)
            for key in doomed:
                del self._entries[key]
            self._counters["deletes"] += live
            return live

    def purge_expired(self) -> int:
        with self._lock:
            now = self._clock()
            expired = [key for key, entry in self._entries.items() if entry[0] <= now]
            for key in expired:
                del self._entries[key]
            self._counters["expired_purged"] += len(expired)
            return len(expired)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def clear_local(self) -> None:
        """Nothing to forget: the dict is the store."""

    def stats(self) -> dict[str, int]:
        with self._lock:
            now = self._clock()
            entries = sum(1 for entry in self._entries.values() if entry[0] > now)
            return {**self._counters, "l1_size": 0, "entries": entries}

    def close(self) -> None:
        self.clear()


_MISSING = object()
