"""Where rate-limit buckets live: the store contract, and the SQLite store (the default).

A bucket is one policy applied to one key; its state is one integer, the GCRA ``tat`` in nanoseconds
(see ``api.core.rate_limit_policy``). A bucket whose ``tat`` is not after *now* is idle, exactly as
if it did not exist, so rows expire by themselves and ``purge_expired`` only reclaims space.

Every backend decides a hit atomically across threads and processes, reading the clock at the
moment of the decision: SQLite with one statement (one policy) or one ``BEGIN IMMEDIATE``
transaction (several), Redis (scale-out issue) with one Lua script and Redis's clock. A batch of
independent hits (``hit_batch``: the requests an event-loop iteration received together) is decided
in one atomic step too, exactly as if its hits came one after another at one instant: SQLite pays
for one write transaction instead of one per hit. One contract test suite
(``tests/core/rate_limit_store_contract.py``) runs against every backend.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NamedTuple, Protocol, runtime_checkable

from api.core.config import Settings
from api.core.rate_limit_policy import NANOSECONDS, Policy
from api.core.sqlite import (
    SQLiteStoreError,
    Synchronous,
    ThreadConnections,
    WrittenValue,
    retry_while_busy,
)
from api.core.sqlite_errors import is_busy

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH: Final = 512
# The table name, rate_limit_v1, carries its schema version: the session cache owns PRAGMA user_version of the
# shared file, so a new layout gets a new table instead of a migration (2025-06, issue 4).
SCHEMA: Final = """CREATE TABLE IF NOT EXISTS rate_limit_v1 (
    key TEXT NOT NULL,
    policy TEXT NOT NULL,
    tat INTEGER NOT NULL,
    interval INTEGER NOT NULL,
    tolerance INTEGER NOT NULL,
    PRIMARY KEY (key, policy)
) WITHOUT ROWID"""
# No index on tat: it changes on every hit and an index would double the write; the purge scans.
# One policy, one statement. The common case, a live bucket, is a plain UPDATE that moves tat only
# when the hit fits; the new tat comes back through ret_rate_limit_tat() (a WrittenValue: cheaper
# than RETURNING). No row updated: the bucket is missing (HIT_ONE inserts it) or the hit does not
# fit (HIT_ONE matches no row either, and nothing is written).
HIT_LIVE: Final = (
    "UPDATE rate_limit_v1 SET tat = ret_rate_limit_tat(max(tat, ?3) + ?4), interval = ?5, tolerance = ?6 "
    "WHERE key = ?1 AND policy = ?2 AND max(tat, ?3) + ?4 - ?3 <= ?6"
)
TAT_FUNCTION: Final = "ret_rate_limit_tat"
HIT_ONE: Final = (
    "INSERT INTO rate_limit_v1 (key, policy, tat, interval, tolerance) VALUES (?1, ?2, ?3 + ?4, ?5, ?6) "
    "ON CONFLICT (key, policy) DO UPDATE SET tat = max(tat, ?3) + ?4, interval = ?5, tolerance = ?6 "
    "WHERE max(tat, ?3) + ?4 - ?3 <= ?6 RETURNING tat"
)
SELECT_TATS: Final = "SELECT policy, tat FROM rate_limit_v1 WHERE key = ?1"
UPSERT: Final = (
    "INSERT INTO rate_limit_v1 (key, policy, tat, interval, tolerance) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT (key, policy) DO UPDATE SET tat = excluded.tat, interval = excluded.interval, "
    "tolerance = excluded.tolerance"
)
REFUND: Final = "UPDATE rate_limit_v1 SET tat = max(tat - ?3, ?4) WHERE key = ?1 AND policy = ?2 AND tat > ?4"
SELECT_LIVE: Final = "SELECT policy, tat, interval, tolerance FROM rate_limit_v1 WHERE key = ?1 AND tat > ?2"
DELETE_KEY: Final = "DELETE FROM rate_limit_v1 WHERE key = ?1 RETURNING tat"
PURGE_BATCH: Final = 2000
PURGE: Final = (
    "DELETE FROM rate_limit_v1 WHERE (key, policy) IN "
    "(SELECT key, policy FROM rate_limit_v1 WHERE tat <= ?1 LIMIT ?2)"
)
COUNT_LIVE: Final = "SELECT count(*) FROM rate_limit_v1 WHERE tat > ?1"
# A decision waits at most this long for another process's write; past it the store reports an
# error and RATE_LIMIT_ON_STORE_ERROR decides, instead of stalling the event loop for 30 s.
BUSY_TIMEOUT_MS: Final = 2000


class RateLimitStoreError(RuntimeError):
    """The storage behind the limiter failed (unreadable, locked too long, disk full, ...)."""


class HitOutcome(NamedTuple):
    """What a store decided: the clock it used, and each policy's ``tat`` after the decision.

    ``tats[i]`` belongs to ``policies[i]``; an idle bucket reports ``now_ns``.
    """

    now_ns: int
    admitted: bool
    tats: tuple[int, ...]


class Hit(NamedTuple):
    """One hit of a batch: ``cost`` units of ``key`` against every policy, all or nothing."""

    key: str
    policies: Sequence[Policy]
    cost: int = 1


class BucketState(NamedTuple):
    """A live bucket as stored: its ``tat`` and the interval/tolerance of its last admitted hit."""

    policy: str
    tat_ns: int
    interval_ns: int
    tolerance_ns: int


@runtime_checkable
class RateLimitStore(Protocol):
    """GCRA buckets keyed by ``(key, policy name)``; see the module docstring for the semantics.

    Keys are non-empty ``str`` of at most ``MAX_KEY_LENGTH`` characters. Policies passed together
    have distinct names. Storage failures raise ``RateLimitStoreError``.
    """

    def hit(self, key: str, policies: Sequence[Policy], cost: int) -> HitOutcome:
        """Decide one hit of ``cost`` units against every policy's bucket of ``key``, atomically.

        Admitted only if every bucket fits its increment (``max(tat, now) + cost × interval - now
        <= tolerance``); then every ``tat`` moves, else none does (all or nothing). A cost some
        policy can never admit is refused without a write.
        """

    def hit_batch(self, hits: Sequence[Hit]) -> list[HitOutcome]:
        """Decide independent hits in one atomic step: ``outcomes[i]`` is what ``hit(*hits[i])``
        would have decided after ``hits[:i]``, every one at the same instant (one clock reading).
        Each hit is all or nothing on its own; a failure decides none of them (nothing is written).
        """

    def refund(self, key: str, policies: Sequence[Policy], cost: int) -> None:
        """Give ``cost`` units back to every live bucket of ``key`` (never below idle), atomically."""

    def buckets(self, key: str) -> tuple[int, list[BucketState]]:
        """The clock now, and every live bucket of ``key`` (any policy), sorted by policy name."""

    def reset(self, key: str) -> int:
        """Remove every bucket of ``key``; return how many were live."""

    def purge_expired(self) -> int:
        """Remove idle buckets from storage; return how many were removed."""

    def count(self) -> int:
        """How many live buckets the store holds."""

    def close(self) -> None:
        """Release the storage (idempotent)."""


def validate_hit(key: str, policies: Sequence[Policy], cost: int) -> None:
    """The argument checks every backend makes before touching storage.

    Raises:
        ValueError: bad key, no policies, duplicate policy names, or cost < 1.
        TypeError: ``cost`` is not an int.
    """
    if type(key) is not str or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"rate-limit key must be a non-empty str of at most {MAX_KEY_LENGTH} chars")
    if type(cost) is not int:
        raise TypeError("cost must be an int")
    if cost < 1:
        raise ValueError("cost must be >= 1")
    if not policies or (len(policies) > 1 and len({policy.name for policy in policies}) != len(policies)):
        raise ValueError("a hit needs at least one policy, with distinct names")


def never_fits(policies: Sequence[Policy], cost: int) -> bool:
    """True when ``cost`` exceeds what some policy can ever admit (refused without a write)."""
    return any(cost * policy.interval_ns > policy.tolerance_ns for policy in policies)


def fits(policy: Policy, tat_ns: int, now_ns: int, cost: int) -> bool:
    """True when a hit of ``cost`` fits the bucket whose ``tat`` is ``tat_ns``."""
    return max(tat_ns, now_ns) + policy.increment_ns(cost) - now_ns <= policy.tolerance_ns


class SQLiteRateLimitStore:
    """Buckets in table ``rate_limit_v1`` of the session store's SQLite file (``RET_SESSION_DB``).

    Args:
        path: the SQLite file (shared with the session cache; WAL).
        clock: wall-clock seconds; every process must agree on it.
        synchronous: ``NORMAL`` or ``FULL`` (``RET_SESSION_DB_SYNCHRONOUS``).

    Raises:
        RateLimitStoreError: the file cannot be opened or the table created; names the path.
    """

    def __init__(
        self, path: Path, *, clock: Callable[[], float] = time.time, synchronous: Synchronous = "NORMAL"
    ) -> None:
        self.path = path
        self._clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._written = WrittenValue(TAT_FUNCTION)
            self._connections = ThreadConnections(
                path,
                synchronous,
                setup=self._written.register,
                busy_timeout=BUSY_TIMEOUT_MS / 1000,
                checkpoints=True,
            )
            self._connections.execute(SCHEMA)
        except (OSError, sqlite3.Error, SQLiteStoreError) as exc:
            raise RateLimitStoreError(f"rate-limit store {path} is unusable: {exc}") from exc

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.time
    ) -> SQLiteRateLimitStore:
        """Build on the session store's file (the app's lifespan and the CLI use this)."""
        return cls(settings.ret_session_db, clock=clock, synchronous=settings.ret_session_db_synchronous)

    def _now_ns(self) -> int:
        return round(self._clock() * NANOSECONDS)

    def hit(self, key: str, policies: Sequence[Policy], cost: int) -> HitOutcome:
        # Runs for every hit outside a batch (services, an idle server's requests): kept flat,
        # because each Python call here costs about a tenth of the SQLite statement itself.
        validate_hit(key, policies, cost)
        if never_fits(policies, cost):
            return self._refused_at_once(key, policies)
        try:
            if len(policies) == 1:
                try:
                    outcome = self._try_hit_one(key, policies[0], cost)
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
                    outcome = retry_while_busy(
                        self._connections.busy_timeout, self._try_hit_one, key, policies[0], cost
                    )
            else:
                outcome = self._hit_stacked(key, policies, cost)
        except (sqlite3.Error, SQLiteStoreError) as exc:
            raise self._failure("hit", exc) from exc
        if outcome.admitted:
            self._connections.wrote()
        return outcome

    def _try_hit_one(self, key: str, policy: Policy, cost: int) -> HitOutcome:
        # Read per attempt: a hit that waited for the write lock is decided at the time it gets it.
        # An attempt that fails busy has written nothing (each statement is atomic, and only the
        # first to succeed writes).
        now = round(self._clock() * NANOSECONDS)
        return self._decide_one(self._connections.get(), key, policy, cost, now)

    def _decide_one(
        self, connection: sqlite3.Connection, key: str, policy: Policy, cost: int, now: int
    ) -> HitOutcome:
        params = (key, policy.name, now, cost * policy.interval_ns, policy.interval_ns, policy.tolerance_ns)
        if connection.execute(HIT_LIVE, params).rowcount == 1:
            tat: int = self._written.local.value
            return HitOutcome(now, True, (tat,))
        row = connection.execute(HIT_ONE, params).fetchone()
        if row is not None:
            return HitOutcome(now, True, (row[0],))
        stored = dict(connection.execute(SELECT_TATS, (key,)).fetchall())
        return HitOutcome(now, False, (max(stored.get(policy.name, now), now),))

    def _hit_stacked(self, key: str, policies: Sequence[Policy], cost: int) -> HitOutcome:
        with self._connections.transaction() as connection:
            # Read under the write lock: no other process decides meanwhile.
            return self._decide_stacked(connection, key, policies, cost, self._now_ns())

    @staticmethod
    def _decide_stacked(
        connection: sqlite3.Connection, key: str, policies: Sequence[Policy], cost: int, now: int
    ) -> HitOutcome:
        """Several policies in the caller's write transaction: read every tat, then all or nothing."""
        stored = dict(connection.execute(SELECT_TATS, (key,)).fetchall())
        tats = tuple(max(stored.get(policy.name, now), now) for policy in policies)
        if not all(fits(policy, tat, now, cost) for policy, tat in zip(policies, tats, strict=True)):
            return HitOutcome(now, False, tats)
        moved = tuple(tat + policy.increment_ns(cost) for policy, tat in zip(policies, tats, strict=True))
        connection.executemany(
            UPSERT,
            [
                (key, policy.name, tat, policy.interval_ns, policy.tolerance_ns)
                for policy, tat in zip(policies, moved, strict=True)
            ],
        )
        return HitOutcome(now, True, moved)

    def hit_batch(self, hits: Sequence[Hit]) -> list[HitOutcome]:
        for key, policies, cost in hits:
            validate_hit(key, policies, cost)
        if len(hits) <= 1:  # an idle server's batches: one autocommit statement beats BEGIN…COMMIT
            return [self.hit(*hit) for hit in hits]
        try:
            with self._connections.transaction() as connection:
                now = self._now_ns()  # one instant for the batch, read under the write lock
                outcomes = [self._decide(connection, *hit, now) for hit in hits]
        except (sqlite3.Error, SQLiteStoreError) as exc:
            raise self._failure("hit", exc) from exc
        self._connections.wrote(sum(1 for outcome in outcomes if outcome.admitted))
        return outcomes

    def _decide(
        self, connection: sqlite3.Connection, key: str, policies: Sequence[Policy], cost: int, now: int
    ) -> HitOutcome:
        """One hit of a batch, inside the batch's write transaction."""
        if never_fits(policies, cost):
            stored = dict(connection.execute(SELECT_TATS, (key,)).fetchall())
            tats = tuple(max(stored.get(policy.name, now), now) for policy in policies)
            return HitOutcome(now, False, tats)
        if len(policies) == 1:
            return self._decide_one(connection, key, policies[0], cost, now)
        return self._decide_stacked(connection, key, policies, cost, now)

    def _refused_at_once(self, key: str, policies: Sequence[Policy]) -> HitOutcome:
        now, live = self.buckets(key)
        stored = {bucket.policy: bucket.tat_ns for bucket in live}
        return HitOutcome(now, False, tuple(stored.get(policy.name, now) for policy in policies))

    def refund(self, key: str, policies: Sequence[Policy], cost: int) -> None:
        validate_hit(key, policies, cost)
        try:
            with self._connections.transaction() as connection:
                now = self._now_ns()
                connection.executemany(
                    REFUND, [(key, policy.name, policy.increment_ns(cost), now) for policy in policies]
                )
        except (sqlite3.Error, SQLiteStoreError) as exc:
            raise self._failure("refund", exc) from exc
        self._connections.wrote()

    def buckets(self, key: str) -> tuple[int, list[BucketState]]:
        now = self._now_ns()
        rows = self._execute(SELECT_LIVE, (key, now), "read").fetchall()
        return now, sorted((BucketState(*row) for row in rows), key=_by_policy)

    def reset(self, key: str) -> int:
        now = self._now_ns()
        removed = self._execute(DELETE_KEY, (key,), "reset").fetchall()
        self._connections.wrote(len(removed))
        return sum(1 for (tat,) in removed if tat > now)

    def purge_expired(self) -> int:
        now = self._now_ns()
        total = 0
        while True:
            removed = self._execute(PURGE, (now, PURGE_BATCH), "purge").rowcount
            self._connections.wrote(removed)
            total += removed
            if removed < PURGE_BATCH:
                return total

    def count(self) -> int:
        result: int = self._execute(COUNT_LIVE, (self._now_ns(),), "count").fetchone()[0]
        return result

    def close(self) -> None:
        self._connections.close()

    def _execute(self, sql: str, params: tuple[object, ...], operation: str) -> sqlite3.Cursor:
        try:
            return self._connections.execute(sql, params)
        except (sqlite3.Error, SQLiteStoreError) as exc:
            raise self._failure(operation, exc) from exc

    def _failure(self, operation: str, exc: Exception) -> RateLimitStoreError:
        return RateLimitStoreError(f"rate-limit {operation} failed on {self.path}: {exc}")


def _by_policy(bucket: BucketState) -> str:
    return bucket.policy


STORES: Final[dict[str, Callable[[Settings], RateLimitStore]]] = {}


def build_rate_limit_store(settings: Settings) -> RateLimitStore:
    """The store that goes with ``RET_SESSION_BACKEND`` (sqlite, or memory for tests)."""
    if not STORES:
        from api.core.rate_limit_memory import MemoryRateLimitStore

        STORES.update(sqlite=SQLiteRateLimitStore.from_settings, memory=MemoryRateLimitStore.from_settings)
    return STORES[settings.ret_session_backend](settings)
