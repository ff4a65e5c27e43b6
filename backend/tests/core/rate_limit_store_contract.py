"""The rate-limit store contract as tests. A backend's test module subclasses
``RateLimitStoreContract`` and provides a ``store`` fixture built on the ``clock`` fixture.

A Redis store (scale-out issue) runs this same class; its ``clock`` may only be able to move forward
in real time, so every test here advances the clock through ``clock.advance`` and nothing else.
"""

from __future__ import annotations

import pytest

from api.core.rate_limit_policy import Policy
from api.core.rate_limit_store import BucketState, Hit, RateLimitStore
from tests.support.clock import FakeClock

PER_MINUTE = Policy("per-minute", 3, 60)  # interval 20 s, capacity 3
PER_SECOND = Policy("per-second", 2, 1)  # interval 0.5 s, capacity 2
WITH_BURST = Policy("burst", 1, 10, burst=2)  # interval 10 s, capacity 3
NS = 1_000_000_000


class RateLimitStoreContract:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, clock: FakeClock) -> RateLimitStore:
        raise NotImplementedError

    def admitted(self, store: RateLimitStore, key: str, *policies: Policy, cost: int = 1) -> bool:
        return store.hit(key, list(policies), cost).admitted

    def test_implements_the_protocol(self, store: RateLimitStore) -> None:
        assert isinstance(store, RateLimitStore)

    def test_idle_bucket_admits_its_capacity_at_once_then_refuses(self, store: RateLimitStore) -> None:
        assert [self.admitted(store, "k", PER_MINUTE) for _ in range(4)] == [True, True, True, False]

    def test_burst_adds_to_the_limit_at_once(self, store: RateLimitStore) -> None:
        assert [self.admitted(store, "k", WITH_BURST) for _ in range(4)] == [True, True, True, False]

    def test_one_unit_returns_per_interval(self, store: RateLimitStore, clock: FakeClock) -> None:
        for _ in range(3):
            store.hit("k", [PER_MINUTE], 1)
        clock.advance(19.999)
        assert not self.admitted(store, "k", PER_MINUTE)
        clock.advance(0.001)
        assert self.admitted(store, "k", PER_MINUTE)
        assert not self.admitted(store, "k", PER_MINUTE)

    def test_outcome_reports_the_clock_and_tat(self, store: RateLimitStore, clock: FakeClock) -> None:
        outcome = store.hit("k", [PER_MINUTE], 2)
        now = round(clock.now * NS)
        assert outcome.now_ns == now
        assert outcome.tats == (now + 40 * NS,)

    def test_refused_hit_reports_the_unchanged_tat(self, store: RateLimitStore, clock: FakeClock) -> None:
        store.hit("k", [PER_MINUTE], 3)
        outcome = store.hit("k", [PER_MINUTE], 1)
        assert not outcome.admitted
        assert outcome.tats == (round(clock.now * NS) + 60 * NS,)

    def test_refused_hit_consumes_nothing(self, store: RateLimitStore, clock: FakeClock) -> None:
        store.hit("k", [PER_MINUTE], 2)
        assert not self.admitted(store, "k", PER_MINUTE, cost=2)
        assert self.admitted(store, "k", PER_MINUTE, cost=1)

    def test_cost_above_capacity_is_refused_without_a_write(self, store: RateLimitStore) -> None:
        outcome = store.hit("k", [PER_MINUTE], 4)
        assert not outcome.admitted
        assert store.buckets("k")[1] == []

    def test_stacked_policies_are_all_or_nothing(self, store: RateLimitStore) -> None:
        assert self.admitted(store, "k", PER_MINUTE, PER_SECOND, cost=2)
        # PER_SECOND is empty: the hit is refused and PER_MINUTE keeps its last unit.
        assert not self.admitted(store, "k", PER_MINUTE, PER_SECOND)
        assert self.admitted(store, "k", PER_MINUTE)

    def test_stacked_outcome_lists_tats_in_policy_order(
        self, store: RateLimitStore, clock: FakeClock
    ) -> None:
        now = round(clock.now * NS)
        outcome = store.hit("k", [PER_SECOND, PER_MINUTE], 1)
        assert outcome.tats == (now + NS // 2, now + 20 * NS)

    def test_keys_and_policies_have_separate_buckets(self, store: RateLimitStore) -> None:
        store.hit("a", [PER_MINUTE], 3)
        assert self.admitted(store, "b", PER_MINUTE)
        assert self.admitted(store, "a", PER_SECOND)

    def test_refund_gives_units_back(self, store: RateLimitStore) -> None:
        store.hit("k", [PER_MINUTE], 3)
        store.refund("k", [PER_MINUTE], 2)
        assert self.admitted(store, "k", PER_MINUTE, cost=2)
        assert not self.admitted(store, "k", PER_MINUTE)

    def test_refund_never_goes_below_idle(self, store: RateLimitStore) -> None:
        store.hit("k", [PER_MINUTE], 1)
        store.refund("k", [PER_MINUTE], 3)
        assert [self.admitted(store, "k", PER_MINUTE) for _ in range(4)] == [True, True, True, False]

    def test_refund_of_an_unknown_bucket_is_a_no_op(self, store: RateLimitStore) -> None:
        store.refund("nobody", [PER_MINUTE], 1)
        assert store.buckets("nobody")[1] == []

    def test_buckets_lists_live_buckets_with_their_parameters(
        self, store: RateLimitStore, clock: FakeClock
    ) -> None:
        store.hit("k", [PER_SECOND, PER_MINUTE], 1)
        now, buckets = store.buckets("k")
        assert now == round(clock.now * NS)
        assert buckets == [
            BucketState("per-minute", now + 20 * NS, 20 * NS, 60 * NS),
            BucketState("per-second", now + NS // 2, NS // 2, NS),
        ]

    def test_idle_buckets_are_not_live(self, store: RateLimitStore, clock: FakeClock) -> None:
        store.hit("k", [PER_SECOND], 1)
        clock.advance(0.5)
        assert store.buckets("k")[1] == []
        assert store.count() == 0

    def test_reset_forgets_every_bucket_of_a_key(self, store: RateLimitStore) -> None:
        store.hit("k", [PER_SECOND, PER_MINUTE], 2)
        store.hit("other", [PER_MINUTE], 1)
        assert store.reset("k") == 2
        assert self.admitted(store, "k", PER_MINUTE, cost=3)
        assert store.reset("absent") == 0
        assert store.count() == 2

    def test_purge_removes_only_idle_buckets(self, store: RateLimitStore, clock: FakeClock) -> None:
        store.hit("a", [PER_SECOND], 1)
        store.hit("b", [PER_MINUTE], 1)
        clock.advance(1)
        assert store.purge_expired() == 1
        assert store.count() == 1
        assert [bucket.policy for bucket in store.buckets("b")[1]] == ["per-minute"]

    @pytest.mark.parametrize("key", ["", "x" * 513])
    def test_bad_keys_are_refused(self, store: RateLimitStore, key: str) -> None:
        with pytest.raises(ValueError, match="key"):
            store.hit(key, [PER_MINUTE], 1)

    def test_bad_costs_and_policy_lists_are_refused(self, store: RateLimitStore) -> None:
        with pytest.raises(ValueError, match="cost"):
            store.hit("k", [PER_MINUTE], 0)
        with pytest.raises(TypeError, match="cost"):
            store.hit("k", [PER_MINUTE], 1.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="policy"):
            store.hit("k", [], 1)
        with pytest.raises(ValueError, match="distinct"):
            store.hit("k", [PER_MINUTE, Policy("per-minute", 9, 1)], 1)

    # -- hit_batch: independent hits decided together ------------------------------------------

    def test_batch_decides_as_hits_one_after_another(self, store: RateLimitStore, clock: FakeClock) -> None:
        now = round(clock.now * NS)
        outcomes = store.hit_batch([Hit("k", [PER_MINUTE])] * 4)
        assert [outcome.admitted for outcome in outcomes] == [True, True, True, False]
        assert [outcome.tats for outcome in outcomes] == [
            (now + 20 * NS,),
            (now + 40 * NS,),
            (now + 60 * NS,),
            (now + 60 * NS,),  # refused: the unchanged tat
        ]
        assert {outcome.now_ns for outcome in outcomes} == {now}
        assert not self.admitted(store, "k", PER_MINUTE)

    def test_batch_hits_are_all_or_nothing_each(self, store: RateLimitStore, clock: FakeClock) -> None:
        outcomes = store.hit_batch(
            [
                Hit("k", [PER_MINUTE, PER_SECOND], 2),
                Hit("k", [PER_MINUTE, PER_SECOND]),  # PER_SECOND is empty: refused, consumes nothing
                Hit("k", [PER_MINUTE]),  # PER_MINUTE still has its last unit
                Hit("k", [PER_MINUTE], 4),  # more than PER_MINUTE can ever admit
                Hit("other", [PER_MINUTE], 3),
            ]
        )
        assert [outcome.admitted for outcome in outcomes] == [True, False, True, False, True]
        now = round(clock.now * NS)
        assert outcomes[1].tats == (now + 40 * NS, now + NS)
        assert outcomes[3].tats == (now + 60 * NS,)
        assert [bucket.tat_ns for bucket in store.buckets("k")[1]] == [now + 60 * NS, now + NS]

    def test_batch_sees_earlier_single_hits_and_later_hits_see_the_batch(self, store: RateLimitStore) -> None:
        store.hit("k", [PER_MINUTE], 2)
        outcomes = store.hit_batch([Hit("k", [PER_MINUTE])] * 2)
        assert [outcome.admitted for outcome in outcomes] == [True, False]
        assert not self.admitted(store, "k", PER_MINUTE)

    def test_empty_batch_decides_nothing(self, store: RateLimitStore) -> None:
        assert store.hit_batch([]) == []

    def test_batch_with_a_bad_hit_is_refused_whole(self, store: RateLimitStore) -> None:
        with pytest.raises(ValueError, match="cost"):
            store.hit_batch([Hit("k", [PER_MINUTE]), Hit("k", [PER_MINUTE], 0)])
        assert store.buckets("k")[1] == []
