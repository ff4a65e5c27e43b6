"""MemoryRateLimitStore: the rate-limit store contract in a dict. One process only: for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from api.core.config import Settings
from api.core.rate_limit_policy import NANOSECONDS, Policy
from api.core.rate_limit_store import BucketState, Hit, HitOutcome, fits, validate_hit


class MemoryRateLimitStore:
    """Same semantics as ``SQLiteRateLimitStore`` (see ``api.core.rate_limit_store``), no storage."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], BucketState] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.time
    ) -> MemoryRateLimitStore:
        return cls(clock=clock)

    def _now_ns(self) -> int:
        return round(self._clock() * NANOSECONDS)

    def hit(self, key: str, policies: Sequence[Policy], cost: int) -> HitOutcome:
        validate_hit(key, policies, cost)
        with self._lock:
            return self._decide(key, policies, cost, self._now_ns())

    def hit_batch(self, hits: Sequence[Hit]) -> list[HitOutcome]:
        for key, policies, cost in hits:
            validate_hit(key, policies, cost)
        with self._lock:
            now = self._now_ns()
            return [self._decide(key, policies, cost, now) for key, policies, cost in hits]

    def _decide(self, key: str, policies: Sequence[Policy], cost: int, now: int) -> HitOutcome:
        tats = []
        for policy in policies:
            bucket = self._buckets.get((key, policy.name))
            tats.append(now if bucket is None or bucket.tat_ns < now else bucket.tat_ns)
        pairs = list(zip(policies, tats, strict=True))
        if not all(fits(policy, tat, now, cost) for policy, tat in pairs):
            return HitOutcome(now, False, tuple(tats))
        moved = []
        for policy, tat in pairs:
            moved.append(tat + cost * policy.interval_ns)
            self._buckets[key, policy.name] = BucketState(
                policy.name, moved[-1], policy.interval_ns, policy.tolerance_ns
            )
        return HitOutcome(now, True, tuple(moved))

    def refund(self, key: str, policies: Sequence[Policy], cost: int) -> None:
        validate_hit(key, policies, cost)
        with self._lock:
            now = self._now_ns()
            for policy in policies:
                bucket = self._buckets.get((key, policy.name))
                if bucket is not None and bucket.tat_ns > now:
                    tat = max(bucket.tat_ns - policy.increment_ns(cost), now)
                    self._buckets[key, policy.name] = BucketState(
                        policy.name, tat, bucket.interval_ns, bucket.tolerance_ns
                    )

    def buckets(self, key: str) -> tuple[int, list[BucketState]]:
        with self._lock:
            now = self._now_ns()
            live = [
                bucket for (owner, _), bucket in self._buckets.items() if owner == key and bucket.tat_ns > now
            ]
        return now, sorted(live, key=lambda bucket: bucket.policy)

    def reset(self, key: str) -> int:
        with self._lock:
            now = self._now_ns()
            doomed = [name for (owner, name) in self._buckets if owner == key]
            removed = [self._buckets.pop((key, name)) for name in doomed]
        return sum(1 for bucket in removed if bucket.tat_ns > now)

    def purge_expired(self) -> int:
        with self._lock:
            now = self._now_ns()
            expired = [ident for ident, bucket in self._buckets.items() if bucket.tat_ns <= now]
            for ident in expired:
                del self._buckets[ident]
        return len(expired)

    def count(self) -> int:
        with self._lock:
            now = self._now_ns()
            return sum(1 for bucket in self._buckets.values() if bucket.tat_ns > now)

    def close(self) -> None:
        with self._lock:
            self._buckets.clear()
