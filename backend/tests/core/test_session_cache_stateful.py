"""Hypothesis drives every cache method (and the clock) against a model dict.

The SessionCache run uses two instances on one file, as two processes would: one with a three-entry
L1 (reads come from L1 and L2, evictions are constant) and one whose L1 holds every key (so a write
that fails to invalidate its copy is read back stale). Time moves only through the ``advance_clock``
rule; steps that land exactly on an expiry are common because every TTL and clock step is a
multiple of 0.5.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from api.core.cache_contract import CacheBackend
from api.core.memory_cache import MemoryCache
from api.core.session_cache import SessionCache

pytest.register_assert_rewrite("tests.core.cache_contract")  # plain asserts in the helpers report values

from tests.core.cache_contract import INT64_MAX, INT64_MIN, FakeClock, assert_same_value  # noqa: E402

DEFAULT_TTL = 5.0
MISSING: Any = object()

ALL_KEYS = ["a", "a:1", "a:10", "a_1", "a%", "a\x00x", "b", "b:x", "A", "user:1_", "user:1a", "é:1", "😀"]
KEYS = st.sampled_from(ALL_KEYS)
PREFIXES = st.sampled_from(["a", "a:", "a:1", "a_", "a%", "a\x00", "b", "user:1_", "user:", "A", "é", "z"])
TTLS = st.none() | st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0])
STEPS = st.sampled_from([0.5, 1.0, 2.0, 5.0])
INTS = st.integers(-5, 5) | st.sampled_from([INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1])
AMOUNTS = st.integers(-3, 3) | st.sampled_from([INT64_MAX, INT64_MIN])
JSON = st.recursive(
    st.none() | st.booleans() | INTS | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
VALUES = INTS | st.text(max_size=6) | st.binary(max_size=6) | JSON
INSTANCE = st.integers(0, 1)

STATEFUL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class CacheModelMachine(RuleBasedStateMachine):
    """Compares a backend with a dict of key → (value, expires_at); subclasses open the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.model: dict[str, tuple[Any, float]] = {}
        self.read_order = list(ALL_KEYS)
        self.caches = self.open_caches()

    def open_caches(self) -> list[CacheBackend]:
        raise NotImplementedError

    def teardown(self) -> None:
        for cache in self.caches:
            cache.close()

    # -- model ---------------------------------------------------------------------------------

    def cache(self, instance: int) -> CacheBackend:
        return self.caches[instance % len(self.caches)]

    def expires_at(self, ttl: float | None) -> float:
        return self.clock.now + (DEFAULT_TTL if ttl is None else ttl)

    def live_value(self, key: str) -> Any:
        entry = self.model.get(key)
        return entry[0] if entry is not None and entry[1] > self.clock.now else MISSING

    def live_keys(self, prefix: str = "") -> list[str]:
        return sorted(
            key for key in self.model if key.startswith(prefix) and self.live_value(key) is not MISSING
        )

    # -- rules ---------------------------------------------------------------------------------

    @rule(seconds=STEPS)
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(instance=INSTANCE, key=KEYS, value=VALUES, ttl=TTLS)
    def set(self, instance: int, key: str, value: Any, ttl: float | None) -> None:
        self.cache(instance).set(key, value, ttl)
        self.model[key] = (value, self.expires_at(ttl))

    @rule(instance=INSTANCE, items=st.dictionaries(KEYS, VALUES, max_size=4), ttl=TTLS)
    def set_many(self, instance: int, items: dict[str, Any], ttl: float | None) -> None:
        self.cache(instance).set_many(items, ttl)
        self.model.update({key: (value, self.expires_at(ttl)) for key, value in items.items()})

    @rule(instance=INSTANCE, key=KEYS)
    def get(self, instance: int, key: str) -> None:
        expected = self.live_value(key)
        actual = self.cache(instance).get(key, MISSING)
        if expected is MISSING:
            assert actual is MISSING
        else:
            assert_same_value(actual, expected)

    @rule(instance=INSTANCE, keys=st.lists(KEYS, max_size=5))
    def get_many(self, instance: int, keys: list[str]) -> None:
        actual = self.cache(instance).get_many(keys)
        expected = {key: self.live_value(key) for key in keys if self.live_value(key) is not MISSING}
        assert_same_value(actual, {key: expected[key] for key in actual if key in expected})
        assert set(actual) == set(expected)

    @rule(instance=INSTANCE, key=KEYS)
    def exists(self, instance: int, key: str) -> None:
        assert self.cache(instance).exists(key) is (self.live_value(key) is not MISSING)

    @rule(instance=INSTANCE, key=KEYS)
    def ttl(self, instance: int, key: str) -> None:
        actual = self.cache(instance).ttl(key)
        if self.live_value(key) is MISSING:
            assert actual is None
        else:
            assert actual == pytest.approx(self.model[key][1] - self.clock.now)

    @rule(instance=INSTANCE, key=KEYS, ttl=TTLS)
    def touch(self, instance: int, key: str, ttl: float | None) -> None:
        value = self.live_value(key)
        assert self.cache(instance).touch(key, ttl) is (value is not MISSING)
        if value is not MISSING:
            self.model[key] = (value, self.expires_at(ttl))

    @rule(instance=INSTANCE, key=KEYS, amount=AMOUNTS, ttl=TTLS)
    def incr(self, instance: int, key: str, amount: int, ttl: float | None) -> None:
        current = self.live_value(key)
        expected: int | None
        if current is MISSING:
            expected, expires_at = amount, self.expires_at(ttl)
        else:
            expected = current + amount if type(current) is int else None
            expires_at = self.model[key][1]
        if expected is None or not INT64_MIN <= expected <= INT64_MAX:
            with pytest.raises(ValueError, match=r"integer|64-bit"):
                self.cache(instance).incr(key, amount, ttl)
            return
        assert self.cache(instance).incr(key, amount, ttl) == expected
        self.model[key] = (expected, expires_at)

    @rule(instance=INSTANCE, key=KEYS)
    def delete(self, instance: int, key: str) -> None:
        assert self.cache(instance).delete(key) is (self.live_value(key) is not MISSING)
        self.model.pop(key, None)

    @rule(instance=INSTANCE, prefix=PREFIXES)
    def clear_pattern(self, instance: int, prefix: str) -> None:
        assert self.cache(instance).clear_pattern(prefix) == len(self.live_keys(prefix))
        self.model = {key: entry for key, entry in self.model.items() if not key.startswith(prefix)}

    @rule(instance=INSTANCE, prefix=PREFIXES)
    def keys(self, instance: int, prefix: str) -> None:
        assert self.cache(instance).keys(prefix) == self.live_keys(prefix)

    @rule(instance=INSTANCE)
    def purge_expired(self, instance: int) -> None:
        # Backends may already have dropped some expired rows (culling, lazy deletes): at most the
        # model's expired entries are left, and a second sweep at the same instant finds none.
        expired = len(self.model) - len(self.live_keys())
        assert 0 <= self.cache(instance).purge_expired() <= expired
        assert self.cache(instance).purge_expired() == 0
        self.model = {key: self.model[key] for key in self.live_keys()}

    @rule(instance=INSTANCE)
    def clear(self, instance: int) -> None:
        self.cache(instance).clear()
        self.model.clear()

    @rule(instance=INSTANCE)
    def clear_local(self, instance: int) -> None:
        self.cache(instance).clear_local()

    @invariant()
    def every_instance_sees_the_live_entries(self) -> None:
        assert self.caches[0].keys() == self.live_keys()
        for cache in self.caches:
            assert cache.stats()["entries"] == len(self.live_keys())

    @invariant()
    def every_instance_reads_every_key_as_the_model_has_it(self) -> None:
        # Reading every key after every step makes a stale L1 copy show up at once. The keys read
        # last are the ones still in a small L1, so the next pass starts with them (reversed order),
        # and the rest rotate so that which keys stay cached changes from step to step.
        recent, rest = self.read_order[::-1][:3], self.read_order[::-1][3:]
        self.read_order = recent + rest[1:] + rest[:1]
        for cache in self.caches:
            for key in self.read_order:
                expected = self.live_value(key)
                if expected is MISSING:
                    assert cache.get(key, MISSING) is MISSING
                    assert cache.ttl(key) is None
                else:
                    assert_same_value(cache.get(key), expected)
                    assert cache.ttl(key) == pytest.approx(self.model[key][1] - self.clock.now)


class SessionCacheMachine(CacheModelMachine):
    # Set by the test case: one file for every example (see TestSessionCacheAgainstModel).
    db_path: Path

    def open_caches(self) -> list[CacheBackend]:
        caches: list[CacheBackend] = [
            SessionCache(self.db_path, size, default_ttl=DEFAULT_TTL, clock=self.clock, max_value_bytes=4096)
            for size in (3, len(ALL_KEYS) + 3)
        ]
        caches[0].clear()
        return caches


class MemoryCacheMachine(CacheModelMachine):
    def open_caches(self) -> list[CacheBackend]:
        return [MemoryCache(default_ttl=DEFAULT_TTL, clock=self.clock, max_value_bytes=4096)]


class TestSessionCacheAgainstModel(SessionCacheMachine.TestCase):  # type: ignore[misc,valid-type]
    """Every example opens fresh instances on one emptied file. Creating a new SQLite file costs
    two fsyncs (~20 ms here), which would dominate the run and make shrinking a failure take minutes;
    a keeper instance holds the file open so closing an example's instances does not checkpoint it."""

    settings = STATEFUL_SETTINGS

    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="session-cache-stateful-"))
        SessionCacheMachine.db_path = self.directory / "session.db"
        self.keeper = SessionCache(
            SessionCacheMachine.db_path, 0, default_ttl=DEFAULT_TTL, max_value_bytes=4096
        )

    def tearDown(self) -> None:
        self.keeper.close()
        shutil.rmtree(self.directory, ignore_errors=True)


TestMemoryCacheAgainstModel = MemoryCacheMachine.TestCase
TestMemoryCacheAgainstModel.settings = STATEFUL_SETTINGS
