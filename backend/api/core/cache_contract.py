"""The session-store contract every backend honours (SQLite by default, memory for tests).

One test suite (``tests/core/cache_contract.py``) runs against every class that claims this
protocol, so a backend is accepted by behaviour, not by inheritance.

Semantics shared by every backend:

- Keys are non-empty ``str`` of at most ``MAX_KEY_BYTES`` UTF-8 bytes.
- Values are JSON types (``dict`` with ``str`` keys, ``list``, ``str``, ``int`` in the signed 64-bit
  range, finite ``float``, ``bool``, ``None``) and, at the top level only, ``bytes``. They come back
  with the same type and value (a tuple comes back as a list). A returned value is a copy.
- Every entry expires. ``ttl_seconds=None`` means the backend's default TTL; a TTL that is ≤ 0, NaN
  or infinite raises ``ValueError``. An entry whose expiry time is ≤ now is never returned.
- Errors: ``TypeError`` for a key or value of the wrong type, ``ValueError`` for a bad key (empty,
  too long, not encodable as UTF-8), TTL, size or non-finite float; ``SessionCacheError`` when the
  storage itself fails.
- ``stats()`` has the same keys on every backend: ``hits_l1``, ``hits_l2``, ``misses``, ``sets``,
  ``deletes``, ``l1_evictions``, ``expired_purged``, ``l1_size``, ``entries``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

MAX_KEY_BYTES = 512


class SessionCacheError(RuntimeError):
    """The storage behind the cache failed (unreadable, corrupt, unwritable, disk full, ...)."""


@runtime_checkable
class CacheBackend(Protocol):
    """A key/value store with per-entry expiry and Redis-like operations."""

    def get(self, key: str, default: Any = None) -> Any:
        """Return the live value of ``key`` (a copy), or ``default`` if missing or expired."""

    def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing any previous entry, expiring after ``ttl_seconds``."""

    def delete(self, key: str) -> bool:
        """Remove ``key``; return True if a live entry was removed."""

    def exists(self, key: str) -> bool:
        """True if ``key`` holds a live entry."""

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, or None if it is missing or expired."""

    def touch(self, key: str, ttl_seconds: float | None = None) -> bool:
        """Restart the expiry of a live ``key`` (sliding expiry); False if it is missing or expired."""

    def incr(self, key: str, amount: int = 1, ttl_seconds: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` atomically and return the new value.

        A missing or expired key is created with ``amount`` and the TTL; a live key keeps its expiry.

        Raises:
            ValueError: the live value is not an int (bools, floats and numeric strings included),
                or the result leaves the signed 64-bit range. Nothing is changed.
            TypeError: ``amount`` is not an int.
        """

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the given keys; only live keys appear in the result."""

    def set_many(self, items: Mapping[str, Any], ttl_seconds: float | None = None) -> None:
        """Store every item in one transaction: all are validated first, then all or none are stored."""

    def clear_pattern(self, prefix: str) -> int:
        """Remove every entry whose key starts with ``prefix`` (literal, case-sensitive).

        Returns the number of live entries removed. ``""`` raises ``ValueError`` (use ``clear()``).
        """

    def keys(self, prefix: str = "") -> list[str]:
        """Live keys starting with ``prefix`` (literal), sorted."""

    def purge_expired(self) -> int:
        """Remove every expired entry from storage; return how many were removed."""

    def clear(self) -> None:
        """Remove every entry."""

    def clear_local(self) -> None:
        """Forget this process's in-memory copies (after writes made outside the cache)."""

    def stats(self) -> dict[str, int]:
        """Counters of this process (hits, misses, sets, ...) and the store's live entry count."""

    def close(self) -> None:
        """Release connections and memory; the object must not be used afterwards."""
