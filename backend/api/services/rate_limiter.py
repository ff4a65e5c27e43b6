"""The rate limiter: ``hit(key, policies, cost)`` decides, ``refund`` gives back, counters count.

Used by the HTTP middleware (one hit per request) and by services (login attempts per user and IP,
upload bytes per user with a refund of what was not stored). Several policies in one hit are decided
together: a refused hit consumes nothing from any of them. Store failures never surface as a 500:
``on_store_error="open"`` admits (logged, counted), ``"closed"`` raises ``RateLimitUnavailableError``
(503).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from api.core.config import Settings
from api.core.rate_limit_policy import NANOSECONDS, Policy
from api.core.rate_limit_store import (
    Hit,
    HitOutcome,
    RateLimitStore,
    RateLimitStoreError,
    build_rate_limit_store,
)
from api.errors import AppError, ServiceUnavailableError
from api.services.rate_limit_headers import rejection_headers

logger = logging.getLogger(__name__)

StoreErrorMode = Literal["open", "closed"]
AccessTokenVerifier = Callable[[str], str | None]
"""Returns the user id for a valid, verified access token, and None for any other token."""

# A failing store would otherwise log once per request.
ERROR_LOG_INTERVAL_SECONDS: Final = 10.0


class RateLimitedError(AppError):
    """429: a rate limit refused the request; ``extra`` names the policy, headers say when to retry."""

    status_code = 429
    code = "rate_limited"


class RateLimitUnavailableError(ServiceUnavailableError):
    """503: the limiter's store failed and ``RATE_LIMIT_ON_STORE_ERROR=closed``."""

    code = "rate_limit_unavailable"


class PolicyState(NamedTuple):
    """One policy's bucket after a decision. Times are seconds from the decision."""

    policy: Policy
    exceeded: bool  # this policy on its own refuses the hit
    remaining: int  # units the bucket would admit now
    reset_after: float  # until the bucket is idle (full) again
    refill_after: float  # until one more unit is available (0 when full)
    retry_after: float  # until this policy admits the hit: 0 if it does, inf if it never can

    @property
    def limit(self) -> int:
        return self.policy.limit


class Decision(NamedTuple):
    """The outcome of ``RateLimiter.hit``.

    ``retry_after`` is 0 when allowed, else the seconds until this same hit would be admitted
    (``inf`` when its cost exceeds what a policy can ever admit). ``store_error`` marks a hit
    admitted without a decision because the store failed (``on_store_error="open"``).
    """

    allowed: bool
    retry_after: float
    states: tuple[PolicyState, ...]
    store_error: bool = False

    @property
    def denied_by(self) -> PolicyState | None:
        """The refusing policy that keeps the client waiting longest, or None when allowed."""
        refusing = [state for state in self.states if state.exceeded]
        return max(refusing, key=lambda state: state.retry_after) if refusing else None


def policy_state(policy: Policy, tat_ns: int, now_ns: int, cost: int, admitted: bool) -> PolicyState:
    """Derive a policy's figures from its ``tat`` after a decision (GCRA, integer nanoseconds)."""
    backlog = tat_ns - now_ns if tat_ns > now_ns else 0
    interval, tolerance, capacity = policy.interval_ns, policy.tolerance_ns, policy.capacity
    remaining = (tolerance - backlog) // interval if tolerance > backlog else 0
    if remaining >= capacity:
        remaining, refill = capacity, 0
    else:
        refill = backlog - tolerance + (remaining + 1) * interval
    retry_after = 0.0
    if not admitted:
        increment = cost * interval
        wait = backlog + increment - tolerance
        if increment > tolerance:
            retry_after = math.inf
        elif wait > 0:
            retry_after = wait / NANOSECONDS
    return PolicyState(
        policy, retry_after > 0, remaining, backlog / NANOSECONDS, refill / NANOSECONDS, retry_after
    )


@dataclass(frozen=True, slots=True)
class BucketStatus:
    """A live bucket as ``ret ratelimit status`` shows it."""

    policy: str
    remaining: int
    capacity: int
    reset_after: float


class RateLimiter:
    """GCRA rate limiting over a ``RateLimitStore``; thread-safe, one per process.

    Args:
        store: where buckets live (SQLite in the session store's file by default).
        on_store_error: ``"open"`` admits when the store fails, ``"closed"`` refuses with 503.
    """

    def __init__(self, store: RateLimitStore, *, on_store_error: StoreErrorMode = "open") -> None:
        self.store = store
        self.on_store_error: StoreErrorMode = on_store_error
        self._lock = threading.Lock()
        self._counters = {"allowed": 0, "denied": 0, "store_errors": 0}
        self._last_error_log = -math.inf
        self._suppressed_errors = 0

    def hit(self, key: str, policies: Sequence[Policy], cost: int = 1) -> Decision:
        """Decide one hit of ``cost`` units on ``key`` against every policy, all or nothing.

        Raises:
            ValueError, TypeError: bad key, policies or cost (programming errors).
            RateLimitUnavailableError: the store failed and ``on_store_error`` is ``"closed"``.
        """
        try:
            outcome = self.store.hit(key, policies, cost)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            return self._store_failed(exc)
        if len(policies) == 1:  # nearly every hit: one call fewer than _decision
            state = policy_state(policies[0], outcome.tats[0], outcome.now_ns, cost, outcome.admitted)
            decision = Decision(outcome.admitted, state.retry_after, (state,))
        else:
            decision = self._decision(outcome, policies, cost)
        with self._lock:
            self._counters["allowed" if decision.allowed else "denied"] += 1
        return decision

    def hit_batch(self, hits: Sequence[Hit]) -> list[Decision]:
        """Decide independent hits together, in order, in one atomic store operation (one write
        transaction on SQLite): ``decisions[i]`` is what ``hit(*hits[i])`` would have decided after
        ``hits[:i]``. A store failure applies to every hit: ``"open"`` admits them all (each counted),
        ``"closed"`` raises ``RateLimitUnavailableError``.

        Raises:
            ValueError, TypeError: a bad key, policies or cost in any hit (nothing is decided).
            RateLimitUnavailableError: the store failed and ``on_store_error`` is ``"closed"``.
        """
        try:
            outcomes = self.store.hit_batch(hits)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            failed = self._store_failed(exc, count=len(hits))
            return [failed] * len(hits)
        pairs = zip(hits, outcomes, strict=True)
        decisions = [self._decision(outcome, hit.policies, hit.cost) for hit, outcome in pairs]
        allowed = sum(1 for decision in decisions if decision.allowed)
        with self._lock:
            self._counters["allowed"] += allowed
            self._counters["denied"] += len(decisions) - allowed
        return decisions

    def enforce(self, key: str, policies: Sequence[Policy], cost: int = 1) -> Decision:
        """``hit``, raising ``RateLimitedError`` (429 with ``Retry-After``) when refused."""
        decision = self.hit(key, policies, cost)
        if not decision.allowed:
            raise rate_limited_error(decision)
        return decision

    def refund(self, key: str, policies: Sequence[Policy], cost: int) -> None:
        """Give ``cost`` units back to ``key``'s buckets (e.g. upload bytes not stored after all).

        Best effort: a store failure is logged and counted, never raised.
        """
        try:
            self.store.refund(key, policies, cost)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            self._record_error(exc)

    def status(self, key: str) -> list[BucketStatus]:
        """Every live bucket of ``key``. Raises ``RateLimitStoreError`` if the store fails."""
        now, buckets = self.store.buckets(key)
        statuses = []
        for bucket in buckets:
            backlog = max(bucket.tat_ns - now, 0)
            capacity = bucket.tolerance_ns // bucket.interval_ns
            remaining = max((bucket.tolerance_ns - backlog) // bucket.interval_ns, 0)
            status = BucketStatus(bucket.policy, min(remaining, capacity), capacity, backlog / NANOSECONDS)
            statuses.append(status)
        return statuses

    def reset(self, key: str) -> int:
        """Forget every bucket of ``key``; return how many were live. Raises on store failure."""
        return self.store.reset(key)

    def purge_expired(self) -> int:
        """Remove idle buckets from the store; return how many."""
        return self.store.purge_expired()

    def stats(self) -> dict[str, int]:
        """This process's counters: ``allowed``, ``denied``, ``store_errors``."""
        with self._lock:
            return dict(self._counters)

    def close(self) -> None:
        self.store.close()

    def _decision(self, outcome: HitOutcome, policies: Sequence[Policy], cost: int) -> Decision:
        now, admitted = outcome.now_ns, outcome.admitted
        states = tuple(
            policy_state(policy, tat, now, cost, admitted)
            for policy, tat in zip(policies, outcome.tats, strict=True)
        )
        return Decision(admitted, 0.0 if admitted else max(state.retry_after for state in states), states)

    def _store_failed(self, exc: Exception, count: int = 1) -> Decision:
        self._record_error(exc, count)
        if self.on_store_error == "closed":
            raise RateLimitUnavailableError("Rate limiting is unavailable; try again shortly") from exc
        return Decision(True, 0.0, (), store_error=True)

    def _record_error(self, exc: Exception, count: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            self._counters["store_errors"] += count
            if now - self._last_error_log < ERROR_LOG_INTERVAL_SECONDS:
                self._suppressed_errors += count
                return
            # This line stands for one failed hit; the others of a batch count as not logged.
            suppressed = self._suppressed_errors + count - 1
            self._suppressed_errors, self._last_error_log = 0, now
        logger.error(
            "rate-limit store failed (%s: %s); on_store_error=%s; %d similar errors not logged",
            type(exc).__name__,
            exc,
            self.on_store_error,
            suppressed,
        )


def rate_limited_error(decision: Decision) -> RateLimitedError:
    """The 429 for a refused decision, with ``Retry-After`` and the RateLimit fields."""
    denied = decision.denied_by
    name = denied.policy.name if denied else "unknown"
    if math.isinf(decision.retry_after):
        detail = f"This request exceeds what rate-limit policy {name!r} can ever admit"
    else:
        seconds = math.ceil(decision.retry_after)
        detail = f"Too many requests: rate limit {name!r} exceeded; retry in {seconds} s"
    return RateLimitedError(detail, extra={"policy": name}, headers=rejection_headers(decision))


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """The limiter for this app, on the store that goes with ``RET_SESSION_BACKEND``.

    Raises:
        RuntimeError: the store cannot be opened; names ``RET_SESSION_DB``.
    """
    warn_unsafe_settings(settings)
    try:
        store = build_rate_limit_store(settings)
    except RateLimitStoreError as exc:
        raise RuntimeError(f"RET_SESSION_DB: {exc}") from exc
    return RateLimiter(store, on_store_error=settings.rate_limit_on_store_error)


def warn_unsafe_settings(settings: Settings) -> list[str]:
    """Log one warning per unsafe rate-limit setting; return the messages."""
    warnings = []
    if any(ipaddress.ip_network(network).prefixlen == 0 for network in settings.ret_trusted_proxies):
        warnings.append(
            "RET_TRUSTED_PROXIES trusts every address: any client can choose its rate-limit identity "
            "with X-Forwarded-For; list only your proxies' addresses"
        )
    if settings.env == "production" and not settings.rate_limit_enabled:
        warnings.append("RATE_LIMIT_ENABLED is false in production: requests are not rate limited")
    if settings.env == "production" and settings.rate_limit_dry_run:
        warnings.append("RATE_LIMIT_DRY_RUN is on in production: limits are reported, never enforced")
    for message in warnings:
        logger.warning(message)
    return warnings
