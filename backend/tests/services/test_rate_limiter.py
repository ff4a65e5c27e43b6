from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from api.core.rate_limit_memory import MemoryRateLimitStore
from api.core.rate_limit_policy import Policy
from api.core.rate_limit_store import BucketState, Hit, HitOutcome, RateLimitStoreError, validate_hit
from api.services.rate_limiter import (
    RateLimitedError,
    RateLimiter,
    RateLimitUnavailableError,
    build_rate_limiter,
    warn_unsafe_settings,
)
from tests.conftest import make_settings
from tests.support.clock import FakeClock

LOGIN = Policy("login", 5, 900)  # one attempt back every 180 s
FAST = Policy("fast", 2, 1)


class BrokenStore(MemoryRateLimitStore):
    """A store whose storage has failed."""

    def hit(self, key: str, policies: Sequence[Policy], cost: int) -> HitOutcome:
        super().hit(key, policies, cost)  # argument checks still apply
        raise RateLimitStoreError("disk I/O error")

    def hit_batch(self, hits: Sequence[Hit]) -> list[HitOutcome]:
        for hit in hits:
            validate_hit(*hit)
        raise RateLimitStoreError("disk I/O error")

    def refund(self, key: str, policies: Sequence[Policy], cost: int) -> None:
        raise RateLimitStoreError("disk I/O error")

    def buckets(self, key: str) -> tuple[int, list[BucketState]]:
        raise RateLimitStoreError("disk I/O error")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(MemoryRateLimitStore(clock=clock))


def test_admitted_hit_reports_each_policy(limiter: RateLimiter) -> None:
    decision = limiter.hit("ip:1", [LOGIN])
    assert decision.allowed
    assert decision.retry_after == 0
    (state,) = decision.states
    assert (state.limit, state.remaining, state.exceeded) == (5, 4, False)
    assert state.reset_after == 180
    assert state.refill_after == 180


def test_refused_hit_says_when_it_would_pass(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(5):
        limiter.hit("ip:1", [LOGIN])
    clock.advance(30)
    decision = limiter.hit("ip:1", [LOGIN])
    assert not decision.allowed
    assert decision.retry_after == 150
    assert decision.denied_by is not None
    assert decision.denied_by.policy == LOGIN


def test_advancing_the_clock_by_retry_after_admits_the_next_hit(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for _ in range(5):
        limiter.hit("ip:1", [LOGIN])
    refused = limiter.hit("ip:1", [LOGIN], cost=2)
    clock.advance(refused.retry_after - 0.001)
    assert not limiter.hit("ip:1", [LOGIN], cost=2).allowed
    clock.advance(0.001)
    assert limiter.hit("ip:1", [LOGIN], cost=2).allowed


def test_stacked_refusal_consumes_nothing_and_names_the_slowest_policy(limiter: RateLimiter) -> None:
    assert limiter.hit("ip:1", [LOGIN, FAST], cost=2).allowed
    decision = limiter.hit("ip:1", [LOGIN, FAST])
    assert not decision.allowed
    assert decision.denied_by is not None
    assert decision.denied_by.policy == FAST
    login_state = decision.states[0]
    assert (login_state.exceeded, login_state.remaining) == (False, 3)
    assert limiter.hit("ip:1", [LOGIN], cost=3).allowed


def test_cost_above_capacity_is_refused_at_once_for_ever(limiter: RateLimiter) -> None:
    decision = limiter.hit("user:1", [LOGIN], cost=6)
    assert not decision.allowed
    assert math.isinf(decision.retry_after)
    assert limiter.hit("user:1", [LOGIN], cost=5).allowed


def test_enforce_raises_a_429_naming_the_policy(limiter: RateLimiter) -> None:
    limiter.hit("ip:1", [FAST], cost=2)
    with pytest.raises(RateLimitedError) as raised:
        limiter.enforce("ip:1", [FAST])
    error = raised.value
    assert (error.status_code, error.code, error.extra) == (429, "rate_limited", {"policy": "fast"})
    assert error.headers["Retry-After"] == "1"
    assert error.headers["RateLimit"] == '"fast";r=0;t=1'


def test_enforce_of_an_impossible_cost_has_no_retry_after(limiter: RateLimiter) -> None:
    with pytest.raises(RateLimitedError, match="can ever admit") as raised:
        limiter.enforce("ip:1", [FAST], cost=3)
    assert "Retry-After" not in raised.value.headers


def test_refund_returns_units_for_costs_known_afterwards(limiter: RateLimiter) -> None:
    uploads = Policy("upload-bytes", 1000, 3600)
    assert limiter.hit("user:7", [uploads], cost=800).allowed
    limiter.refund("user:7", [uploads], 500)  # only 300 bytes were stored
    assert limiter.hit("user:7", [uploads], cost=700).allowed


def test_counters_count_allowed_and_denied(limiter: RateLimiter) -> None:
    for _ in range(3):
        limiter.hit("ip:1", [FAST])
    assert limiter.stats() == {"allowed": 2, "denied": 1, "store_errors": 0}


def test_store_failure_open_admits_logs_and_counts(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(BrokenStore(clock=clock), on_store_error="open")
    with caplog.at_level(logging.ERROR, "api.services.rate_limiter"):
        decisions = [limiter.hit("ip:1", [FAST]) for _ in range(3)]
    assert all(decision.allowed and decision.store_error for decision in decisions)
    assert limiter.stats()["store_errors"] == 3
    assert "disk I/O error" in caplog.text
    assert len(caplog.records) == 1  # later failures within the interval are counted, not logged


def test_a_failed_batch_counts_and_reports_every_hit(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(BrokenStore(clock=clock), on_store_error="open")
    with caplog.at_level(logging.ERROR, "api.services.rate_limiter"):
        decisions = limiter.hit_batch([Hit("ip:1", [FAST])] * 3)
        limiter.hit_batch([Hit("ip:1", [FAST])] * 2)  # within the log interval: counted only
    assert all(decision.allowed and decision.store_error for decision in decisions)
    assert limiter.stats() == {"allowed": 0, "denied": 0, "store_errors": 5}
    assert len(caplog.records) == 1
    assert "2 similar errors not logged" in caplog.text  # the batch's other two hits
    assert limiter._suppressed_errors == 2


def test_store_failure_closed_raises_503(clock: FakeClock) -> None:
    limiter = RateLimiter(BrokenStore(clock=clock), on_store_error="closed")
    with pytest.raises(RateLimitUnavailableError) as raised:
        limiter.hit("ip:1", [FAST])
    assert raised.value.status_code == 503
    assert limiter.stats()["store_errors"] == 1


def test_failed_refund_is_counted_not_raised(clock: FakeClock) -> None:
    limiter = RateLimiter(BrokenStore(clock=clock), on_store_error="closed")
    limiter.refund("ip:1", [FAST], 1)
    assert limiter.stats()["store_errors"] == 1


def test_programming_errors_are_not_store_errors(clock: FakeClock) -> None:
    limiter = RateLimiter(BrokenStore(clock=clock))
    with pytest.raises(ValueError, match="cost"):
        limiter.hit("ip:1", [FAST], cost=0)
    assert limiter.stats()["store_errors"] == 0


def test_status_and_reset(limiter: RateLimiter, clock: FakeClock) -> None:
    limiter.hit("ip:1", [LOGIN, FAST], cost=2)
    statuses = {status.policy: status for status in limiter.status("ip:1")}
    assert (statuses["login"].remaining, statuses["login"].capacity) == (3, 5)
    assert statuses["fast"].reset_after == 1
    assert limiter.reset("ip:1") == 2
    assert limiter.status("ip:1") == []


def test_status_raises_when_the_store_fails(clock: FakeClock) -> None:
    with pytest.raises(RateLimitStoreError):
        RateLimiter(BrokenStore(clock=clock)).status("ip:1")


def test_unusable_store_fails_start_up_naming_the_setting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.ret_session_db.parent.mkdir(parents=True)
    settings.ret_session_db.write_bytes(b"garbage" * 1000)
    with pytest.raises(RuntimeError, match="RET_SESSION_DB"):
        build_rate_limiter(settings)


def test_start_up_warns_about_unsafe_setups(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(
        tmp_path,
        env="production",
        ret_trusted_proxies=["0.0.0.0/0"],
        rate_limit_enabled=False,
        rate_limit_dry_run=True,
    )
    with caplog.at_level(logging.WARNING):
        warnings = warn_unsafe_settings(settings)
    assert len(warnings) == 3
    assert "trusts every address" in caplog.text
    assert warn_unsafe_settings(make_settings(tmp_path, ret_trusted_proxies=["10.0.0.0/8"])) == []


def test_purge_removes_idle_buckets(limiter: RateLimiter, clock: FakeClock) -> None:
    limiter.hit("ip:1", [FAST])
    limiter.hit("ip:2", [LOGIN])
    clock.advance(10)
    assert limiter.purge_expired() == 1
    assert limiter.store.count() == 1
