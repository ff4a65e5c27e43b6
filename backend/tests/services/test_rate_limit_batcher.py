"""HitBatcher: hits queued in one event-loop iteration are decided by one ``hit_batch`` call."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

import pytest

from api.core.rate_limit_memory import MemoryRateLimitStore
from api.core.rate_limit_policy import Policy
from api.core.rate_limit_store import Hit, HitOutcome
from api.services.rate_limit_batcher import HitBatcher
from api.services.rate_limiter import RateLimiter, RateLimitUnavailableError
from tests.services.test_rate_limiter import BrokenStore
from tests.support.clock import FakeClock

THREE = Policy("three", 3, 60)


class CountingStore(MemoryRateLimitStore):
    """A memory store that records the size of every batch it decides."""

    def __init__(self) -> None:
        super().__init__(clock=FakeClock())
        self.batches: list[list[str]] = []

    def hit_batch(self, hits: Sequence[Hit]) -> list[HitOutcome]:
        self.batches.append([hit.key for hit in hits])
        return super().hit_batch(hits)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def batcher(store: CountingStore) -> HitBatcher:
    return HitBatcher(RateLimiter(store))


def test_hits_of_one_iteration_are_decided_together_in_order(
    batcher: HitBatcher, store: CountingStore
) -> None:
    async def burst() -> list[bool]:
        keys = ["a", "a", "b", "a", "a"]
        decisions = await asyncio.gather(*(batcher.hit(key, [THREE]) for key in keys))
        return [decision.allowed for decision in decisions]

    assert asyncio.run(burst()) == [True, True, True, True, False]
    assert store.batches == [["a", "a", "b", "a", "a"]]


def test_hits_awaited_one_after_another_are_separate_batches(
    batcher: HitBatcher, store: CountingStore
) -> None:
    async def one_by_one() -> list[int]:
        return [(await batcher.hit("a", [THREE])).states[0].remaining for _ in range(4)]

    assert asyncio.run(one_by_one()) == [2, 1, 0, 0]
    assert store.batches == [["a"]] * 4


def test_a_hit_cancelled_before_its_batch_consumes_nothing(batcher: HitBatcher, store: CountingStore) -> None:
    async def cancel_one() -> list[bool]:
        doomed = asyncio.ensure_future(batcher.hit("a", [THREE], cost=3))
        kept = [asyncio.ensure_future(batcher.hit("a", [THREE])) for _ in range(3)]
        await asyncio.sleep(0)  # every hit is queued
        doomed.cancel()
        return [decision.allowed for decision in await asyncio.gather(*kept)]

    assert asyncio.run(cancel_one()) == [True, True, True]
    assert store.batches == [["a", "a", "a"]]


def test_a_bad_hit_fails_alone_and_its_iteration_is_still_decided(
    batcher: HitBatcher, store: CountingStore
) -> None:
    async def mixed() -> tuple[BaseException | None, bool]:
        good = asyncio.ensure_future(batcher.hit("a", [THREE]))
        try:
            await batcher.hit("a", [THREE], cost=0)
        except ValueError as exc:
            return exc, (await good).allowed
        return None, False

    error, allowed = asyncio.run(mixed())
    assert isinstance(error, ValueError)
    assert allowed
    assert store.batches == [["a"]]


def test_store_failure_open_admits_every_hit_of_the_batch() -> None:
    limiter = RateLimiter(BrokenStore(clock=FakeClock()), on_store_error="open")
    batcher = HitBatcher(limiter)

    async def burst() -> list[bool]:
        decisions = await asyncio.gather(*(batcher.hit("a", [THREE]) for _ in range(4)))
        return [decision.allowed and decision.store_error for decision in decisions]

    assert asyncio.run(burst()) == [True] * 4
    assert limiter.stats()["store_errors"] == 4


def test_store_failure_closed_raises_in_every_waiter() -> None:
    batcher = HitBatcher(RateLimiter(BrokenStore(clock=FakeClock()), on_store_error="closed"))

    async def burst() -> list[BaseException | object]:
        return await asyncio.gather(*(batcher.hit("a", [THREE]) for _ in range(3)), return_exceptions=True)

    outcomes = asyncio.run(burst())
    assert [type(outcome) for outcome in outcomes] == [RateLimitUnavailableError] * 3


def test_each_event_loop_has_its_own_queue(batcher: HitBatcher, store: CountingStore) -> None:
    paused = asyncio.new_event_loop()
    waiting = paused.create_task(batcher.hit("a", [THREE]))
    paused.call_soon(paused.stop)
    paused.run_forever()  # the hit is queued; the loop pauses before the iteration of its flush
    assert not waiting.done()

    async def elsewhere() -> bool:
        return (await batcher.hit("a", [THREE], cost=3)).allowed

    assert asyncio.run(elsewhere())  # decided alone: the paused loop's hit is not in its batch
    assert store.batches == [["a"]]
    assert not paused.run_until_complete(waiting).allowed  # decided when its loop runs again
    assert store.batches == [["a"], ["a"]]
    paused.close()


REQUEST = contextvars.ContextVar[str]("request")


class ContextRecordingStore(MemoryRateLimitStore):
    def __init__(self) -> None:
        super().__init__(clock=FakeClock())
        self.seen: list[str | None] = []

    def hit_batch(self, hits: Sequence[Hit]) -> list[HitOutcome]:
        self.seen.append(REQUEST.get(None))
        return super().hit_batch(hits)


def test_a_batch_is_decided_outside_any_one_requests_context() -> None:
    store = ContextRecordingStore()
    batcher = HitBatcher(RateLimiter(store))

    async def request(name: str) -> bool:
        REQUEST.set(name)  # as the request-context middleware sets the request id
        return (await batcher.hit("a", [THREE])).allowed

    async def burst() -> list[bool]:
        return list(await asyncio.gather(request("first"), request("second")))

    assert asyncio.run(burst()) == [True, True]
    assert store.seen == [None]  # its log lines carry no request's id
