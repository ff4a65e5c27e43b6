"""The session-store contract as a test mixin: every backend must pass it unchanged.

A backend's test module subclasses ``CacheContract`` and provides a ``cache_factory`` fixture: a
callable that takes a ``FakeClock`` and returns a fresh, empty backend built with
``default_ttl=DEFAULT_TTL`` and ``max_value_bytes=MAX_VALUE_BYTES`` (closed by the fixture afterwards).
Time only moves when a test advances the clock; nothing here sleeps.
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

from api.core.cache_contract import CacheBackend
from tests.support.clock import FakeClock

DEFAULT_TTL = 100.0
MAX_VALUE_BYTES = 4096
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


CacheFactory = Callable[[FakeClock], CacheBackend]


def assert_same_value(actual: Any, expected: Any) -> None:
    """Equal *and* of the same type all the way down (``True`` is not ``1``, ``1.0`` is not ``1``)."""
    if isinstance(expected, tuple):
        expected = list(expected)
    assert type(actual) is type(expected), f"{actual!r} is a {type(actual).__name__}, expected {expected!r}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key, item in expected.items():
            assert_same_value(actual[key], item)
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for got, item in zip(actual, expected, strict=True):
            assert_same_value(got, item)
    else:
        assert actual == expected


class _Opaque:
    """An arbitrary object: not a JSON type."""


def value_id(value: Any) -> str:
    """A short test id that is stable between runs (no memory addresses)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))[:40]


def key_id(key: str) -> str:
    return f"{len(key.encode())}bytes-{len(key)}chars"


ROUND_TRIP_VALUES = [
    "",
    "plain",
    "héllo ✓ 😀",
    "with\x00nul",
    0,
    -1,
    42,
    INT64_MAX,
    INT64_MIN,
    1.5,
    -2.25,
    1e300,
    True,
    False,
    None,
    [],
    {},
    [1, "a", None, True, 1.5, [2, [3]]],
    {"a": {"b": [1, 2.5, "c"]}, "d": None, "e": False},
    {"": "empty key", "ünïcode": "ok"},
    b"",
    b"\x00\xffbinary",
    [INT64_MAX, INT64_MIN],
]

UNSTORABLE_VALUES = [
    [b"nested bytes"],
    {"a": b"nested bytes"},
    {1: "int key"},
    {None: "None key"},
    {("a",): "tuple key"},
    {"a": {2: "deep int key"}},
    object(),
    _Opaque(),
    {1, 2},
    frozenset({1}),
    bytearray(b"abc"),
    memoryview(b"abc"),
    datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    decimal.Decimal("1.5"),
    complex(1, 2),
    [object()],
    {"a": [{"b": _Opaque()}]},
]

NON_FINITE_VALUES = [
    math.nan,
    math.inf,
    -math.inf,
    [math.nan],
    {"a": math.inf},
    {"a": [1, -math.inf]},
]

OUT_OF_RANGE_INTS = [2**63, -(2**63) - 1, [2**63], {"a": -(2**64)}]

INVALID_TTLS = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf]

WILDCARD_CHARACTERS = ["%", "_", "*", "?", "["]

ANY_KEY_OPERATIONS: dict[str, Callable[[CacheBackend, Any], object]] = {
    "get": lambda cache, key: cache.get(key),
    "set": lambda cache, key: cache.set(key, "value"),
    "delete": lambda cache, key: cache.delete(key),
    "exists": lambda cache, key: cache.exists(key),
    "ttl": lambda cache, key: cache.ttl(key),
    "touch": lambda cache, key: cache.touch(key),
    "incr": lambda cache, key: cache.incr(key),
    "get_many": lambda cache, key: cache.get_many(["ok", key]),
    "set_many": lambda cache, key: cache.set_many({"ok": 1, key: 2}),
}

TTL_OPERATIONS: dict[str, Callable[[CacheBackend, float], object]] = {
    "set": lambda cache, ttl: cache.set("new", 1, ttl),
    "set_many": lambda cache, ttl: cache.set_many({"new": 1, "other": 2}, ttl),
    "touch": lambda cache, ttl: cache.touch("new", ttl),
    "incr": lambda cache, ttl: cache.incr("new", 1, ttl),
}

# Ways a key can be looked at; each returns True if the key is visible through it.
READERS: dict[str, Callable[[CacheBackend, str], bool]] = {
    "get": lambda cache, key: cache.get(key, "<absent>") != "<absent>",
    "exists": lambda cache, key: cache.exists(key),
    "ttl": lambda cache, key: cache.ttl(key) is not None,
    "get_many": lambda cache, key: key in cache.get_many([key]),
    "keys": lambda cache, key: key in cache.keys(""),
    "keys_prefix": lambda cache, key: key in cache.keys(key[:1]),
    "stats_entries": lambda cache, key: cache.stats()["entries"] > 0,
}

COMMON_STATS = {"misses", "sets", "deletes", "expired_purged", "l1_size", "entries"}


class CacheContract:
    """Every semantic point of the session-store contract that does not depend on the backend."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def cache(self, cache_factory: CacheFactory, clock: FakeClock) -> CacheBackend:
        return cache_factory(clock)

    def test_backend_satisfies_the_cache_backend_protocol(self, cache: CacheBackend) -> None:
        assert isinstance(cache, CacheBackend)

    # -- values --------------------------------------------------------------------------------

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=value_id)
    def test_value_round_trips_with_same_type_and_value(self, cache: CacheBackend, value: Any) -> None:
        cache.set("k", value)
        assert_same_value(cache.get("k"), value)
        assert_same_value(cache.get("k"), value)  # a second read may come from another level

    @pytest.mark.parametrize("text", ["123", "-7", "1.5", "true", "null", "[1]", '{"a": 1}', "1e3"])
    def test_numeric_looking_string_stays_a_string(self, cache: CacheBackend, text: str) -> None:
        cache.set("k", text)
        assert_same_value(cache.get("k"), text)

    def test_integral_float_stays_a_float(self, cache: CacheBackend) -> None:
        cache.set("k", 5.0)
        assert_same_value(cache.get("k"), 5.0)

    def test_bool_stays_a_bool(self, cache: CacheBackend) -> None:
        cache.set_many({"t": True, "f": False})
        assert cache.get("t") is True
        assert cache.get("f") is False

    def test_tuple_comes_back_as_a_list(self, cache: CacheBackend) -> None:
        cache.set("k", (1, ("a", (None,)), {"t": (2, 3)}))
        assert_same_value(cache.get("k"), [1, ["a", [None]], {"t": [2, 3]}])

    def test_top_level_bytes_come_back_as_bytes(self, cache: CacheBackend) -> None:
        cache.set("k", bytes(range(256)))
        assert_same_value(cache.get("k"), bytes(range(256)))

    @pytest.mark.parametrize("value", UNSTORABLE_VALUES, ids=value_id)
    def test_unstorable_value_raises_type_error(self, cache: CacheBackend, value: Any) -> None:
        with pytest.raises(TypeError):
            cache.set("k", value)

    @pytest.mark.parametrize("value", [[b"x"], {1: "a"}, _Opaque()], ids=value_id)
    def test_rejected_value_keeps_the_previous_value(self, cache: CacheBackend, value: Any) -> None:
        cache.set("k", "before", 50)
        with pytest.raises(TypeError):
            cache.set("k", value, 10)
        assert cache.get("k") == "before"
        assert cache.ttl("k") == pytest.approx(50)

    def test_rejected_value_stores_nothing(self, cache: CacheBackend) -> None:
        with pytest.raises(TypeError):
            cache.set("k", {"a": b"nested"})
        assert not cache.exists("k")
        assert cache.keys() == []

    @pytest.mark.parametrize("value", NON_FINITE_VALUES, ids=value_id)
    def test_non_finite_float_raises_value_error(self, cache: CacheBackend, value: Any) -> None:
        with pytest.raises(ValueError, match="finite"):
            cache.set("k", value)

    @pytest.mark.parametrize("value", NON_FINITE_VALUES, ids=value_id)
    def test_rejected_non_finite_float_stores_nothing(self, cache: CacheBackend, value: Any) -> None:
        cache.set("k", "before")
        with pytest.raises(ValueError, match="finite"):
            cache.set("k", value)
        assert cache.get("k") == "before"

    @pytest.mark.parametrize("value", OUT_OF_RANGE_INTS, ids=value_id)
    def test_int_outside_64_bits_raises_value_error(self, cache: CacheBackend, value: Any) -> None:
        with pytest.raises(ValueError, match="64-bit"):
            cache.set("k", value)
        assert not cache.exists("k")

    # -- returned values are copies ------------------------------------------------------------

    def test_mutating_a_returned_value_does_not_change_the_cache(self, cache: CacheBackend) -> None:
        cache.set("k", {"list": [1, 2], "nested": {"a": 1}})
        for _ in range(3):  # first read, then reads that may be served from memory
            value = cache.get("k")
            value["list"].append(3)
            value["nested"]["a"] = 99
            value["new"] = True
        assert cache.get("k") == {"list": [1, 2], "nested": {"a": 1}}

    def test_mutating_the_stored_object_after_set_does_not_change_the_cache(
        self, cache: CacheBackend
    ) -> None:
        original = {"list": [1, 2]}
        cache.set("k", original)
        original["list"].append(3)
        assert cache.get("k") == {"list": [1, 2]}

    def test_mutating_a_get_many_result_does_not_change_the_cache(self, cache: CacheBackend) -> None:
        cache.set("k", [1, 2])
        for _ in range(3):
            cache.get_many(["k"])["k"].append(3)
        assert cache.get("k") == [1, 2]

    # -- keys ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("operation", list(ANY_KEY_OPERATIONS))
    def test_empty_key_raises_value_error(self, cache: CacheBackend, operation: str) -> None:
        with pytest.raises(ValueError, match="empty"):
            ANY_KEY_OPERATIONS[operation](cache, "")
        assert cache.keys() == []

    @pytest.mark.parametrize("key", ["a" * 512, "é" * 256, "😀" * 128, "a" * 510 + "é"], ids=key_id)
    def test_key_of_512_utf8_bytes_is_accepted(self, cache: CacheBackend, key: str) -> None:
        cache.set(key, 1)
        assert cache.get(key) == 1
        assert cache.keys() == [key]

    @pytest.mark.parametrize("key", ["a" * 513, "é" * 257, "😀" * 128 + "a", "a" * 511 + "é"], ids=key_id)
    def test_key_over_512_utf8_bytes_raises_value_error(self, cache: CacheBackend, key: str) -> None:
        with pytest.raises(ValueError, match="512"):
            cache.set(key, 1)
        assert cache.keys() == []

    @pytest.mark.parametrize("operation", list(ANY_KEY_OPERATIONS))
    def test_every_method_rejects_a_key_over_512_utf8_bytes(
        self, cache: CacheBackend, operation: str
    ) -> None:
        with pytest.raises(ValueError, match="512"):
            ANY_KEY_OPERATIONS[operation](cache, "é" * 256 + "a")
        assert cache.keys() == []

    @pytest.mark.parametrize("operation", list(ANY_KEY_OPERATIONS))
    def test_key_that_is_not_valid_unicode_raises_value_error(
        self, cache: CacheBackend, operation: str
    ) -> None:
        with pytest.raises(ValueError, match="Unicode"):
            ANY_KEY_OPERATIONS[operation](cache, "user:\ud800")  # a lone surrogate has no UTF-8 form
        assert cache.keys() == []

    @pytest.mark.parametrize("key", [b"k", 1, None, ("k",)], ids=value_id)
    def test_non_str_key_raises_type_error(self, cache: CacheBackend, key: Any) -> None:
        with pytest.raises(TypeError):
            cache.set(key, 1)
        assert cache.keys() == []

    # -- value size ----------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "value",
        ["x" * MAX_VALUE_BYTES, "é" * (MAX_VALUE_BYTES // 2), b"x" * MAX_VALUE_BYTES],
        ids=["str", "multibyte-str", "bytes"],
    )
    def test_value_at_the_size_limit_is_stored(self, cache: CacheBackend, value: Any) -> None:
        cache.set("k", value)
        assert cache.get("k") == value

    @pytest.mark.parametrize(
        "value",
        [
            "x" * (MAX_VALUE_BYTES + 1),
            "é" * (MAX_VALUE_BYTES // 2) + "x",
            b"x" * (MAX_VALUE_BYTES + 1),
            ["x" * MAX_VALUE_BYTES],
            {"k": "x" * (MAX_VALUE_BYTES - 5)},
            list(range(MAX_VALUE_BYTES)),
        ],
        ids=["str", "multibyte-str", "bytes", "list", "dict", "long-list"],
    )
    def test_value_over_the_size_limit_raises_value_error_and_stores_nothing(
        self, cache: CacheBackend, value: Any
    ) -> None:
        cache.set("k", "before")
        with pytest.raises(ValueError, match="limit"):
            cache.set("k", value)
        assert cache.get("k") == "before"

    # -- TTL -----------------------------------------------------------------------------------

    def test_set_without_ttl_uses_the_default_ttl(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", 1)
        assert cache.ttl("k") == pytest.approx(DEFAULT_TTL)
        clock.advance(DEFAULT_TTL - 1)
        assert cache.get("k") == 1
        clock.advance(1)
        assert cache.get("k") is None

    def test_entry_is_live_just_before_its_expiry(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", 1, 10)
        clock.advance(9.5)
        assert cache.get("k") == 1

    def test_entry_whose_expiry_equals_now_is_expired(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", 1, 10)
        clock.advance(10)
        assert cache.get("k", "gone") == "gone"

    @pytest.mark.parametrize("reader", list(READERS))
    def test_expired_entry_is_invisible_to_every_reader(
        self, cache: CacheBackend, clock: FakeClock, reader: str
    ) -> None:
        cache.set("k", 1, 10)
        assert READERS[reader](cache, "k")  # visible (and maybe cached) while live
        clock.advance(10)
        assert not READERS[reader](cache, "k")

    def test_fractional_ttl_is_honoured(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", 1, 0.5)
        clock.advance(0.25)
        assert cache.exists("k")
        clock.advance(0.25)
        assert not cache.exists("k")

    @pytest.mark.parametrize("ttl", INVALID_TTLS, ids=value_id)
    @pytest.mark.parametrize("operation", list(TTL_OPERATIONS))
    def test_invalid_ttl_raises_value_error_and_changes_nothing(
        self, cache: CacheBackend, operation: str, ttl: float
    ) -> None:
        cache.set("new", 7, 50)
        with pytest.raises(ValueError, match="ttl"):
            TTL_OPERATIONS[operation](cache, ttl)
        assert cache.get("new") == 7
        assert cache.ttl("new") == pytest.approx(50)
        assert cache.keys() == ["new"]

    def test_set_replaces_the_expiry(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", 1, 10)
        cache.set("k", 2, 300)
        clock.advance(200)
        assert cache.get("k") == 2
        cache.set("k", 3)
        assert cache.ttl("k") == pytest.approx(DEFAULT_TTL)

    def test_ttl_reports_the_seconds_left(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", 1, 30)
        clock.advance(12)
        assert cache.ttl("k") == pytest.approx(18)

    def test_ttl_of_a_missing_key_is_none(self, cache: CacheBackend) -> None:
        assert cache.ttl("missing") is None

    # -- get / exists --------------------------------------------------------------------------

    def test_get_returns_the_default_for_a_missing_key(self, cache: CacheBackend) -> None:
        sentinel = object()
        assert cache.get("missing") is None
        assert cache.get("missing", sentinel) is sentinel

    def test_get_returns_a_stored_none_rather_than_the_default(self, cache: CacheBackend) -> None:
        cache.set("k", None)
        assert cache.get("k", "default") is None

    def test_exists_is_true_for_a_live_key(self, cache: CacheBackend) -> None:
        cache.set("k", None)
        assert cache.exists("k") is True

    def test_exists_is_false_for_a_missing_key(self, cache: CacheBackend) -> None:
        assert cache.exists("missing") is False

    # -- touch ---------------------------------------------------------------------------------

    def test_touch_restarts_the_expiry_of_a_live_key(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", "v", 10)
        clock.advance(8)
        assert cache.touch("k", 10) is True
        assert cache.ttl("k") == pytest.approx(10)
        clock.advance(9)
        assert cache.get("k") == "v"
        clock.advance(1)
        assert not cache.exists("k")

    def test_touch_can_shorten_the_expiry(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", "v", 300)
        assert cache.touch("k", 5) is True
        clock.advance(5)
        assert not cache.exists("k")

    def test_touch_keeps_the_value(self, cache: CacheBackend) -> None:
        cache.set("k", {"a": [1]}, 10)
        cache.touch("k", 20)
        assert_same_value(cache.get("k"), {"a": [1]})

    def test_touch_without_ttl_uses_the_default_ttl(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", "v", 10)
        clock.advance(5)
        assert cache.touch("k") is True
        assert cache.ttl("k") == pytest.approx(DEFAULT_TTL)

    def test_touch_on_a_missing_key_returns_false_and_creates_nothing(self, cache: CacheBackend) -> None:
        assert cache.touch("missing", 10) is False
        assert not cache.exists("missing")

    def test_touch_on_an_expired_key_returns_false_and_does_not_revive_it(
        self, cache: CacheBackend, clock: FakeClock
    ) -> None:
        cache.set("k", "v", 10)
        clock.advance(10)
        assert cache.touch("k", 100) is False
        assert cache.get("k") is None

    # -- incr ----------------------------------------------------------------------------------

    def test_incr_on_a_missing_key_creates_it_with_the_amount(self, cache: CacheBackend) -> None:
        assert cache.incr("n", 5) == 5
        assert_same_value(cache.get("n"), 5)

    def test_incr_default_amount_is_one(self, cache: CacheBackend) -> None:
        assert cache.incr("n") == 1
        assert cache.incr("n") == 2

    def test_incr_creating_a_key_uses_the_default_ttl(self, cache: CacheBackend) -> None:
        cache.incr("n")
        assert cache.ttl("n") == pytest.approx(DEFAULT_TTL)

    def test_incr_creating_a_key_uses_the_given_ttl(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.incr("n", 1, 7)
        assert cache.ttl("n") == pytest.approx(7)
        clock.advance(7)
        assert not cache.exists("n")

    def test_incr_adds_to_a_live_int(self, cache: CacheBackend) -> None:
        cache.set("n", 40)
        assert cache.incr("n", 2) == 42
        assert_same_value(cache.get("n"), 42)

    def test_incr_with_a_negative_amount_subtracts(self, cache: CacheBackend) -> None:
        cache.set("n", 3)
        assert cache.incr("n", -5) == -2
        assert cache.get("n") == -2

    def test_incr_by_zero_keeps_the_value(self, cache: CacheBackend) -> None:
        cache.set("n", 3)
        assert cache.incr("n", 0) == 3

    def test_incr_on_a_live_key_keeps_its_expiry(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("n", 1, 10)
        clock.advance(4)
        assert cache.incr("n", 1, 1000) == 2
        assert cache.ttl("n") == pytest.approx(6)
        cache.incr("n")
        assert cache.ttl("n") == pytest.approx(6)
        clock.advance(6)
        assert not cache.exists("n")

    def test_incr_on_an_expired_key_restarts_with_amount(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("n", 100, 10)
        clock.advance(10)
        assert cache.incr("n", 3, 20) == 3
        assert cache.ttl("n") == pytest.approx(20)

    def test_incr_on_an_expired_non_int_restarts_with_amount(
        self, cache: CacheBackend, clock: FakeClock
    ) -> None:
        cache.set("n", "text", 10)
        clock.advance(10)
        assert cache.incr("n", 3) == 3
        assert cache.ttl("n") == pytest.approx(DEFAULT_TTL)

    @pytest.mark.parametrize("value", [True, False, 1.0, 5.5, "5", "", None, [1], {"a": 1}, b"5"], ids=repr)
    def test_incr_on_a_non_int_raises_value_error_and_changes_nothing(
        self, cache: CacheBackend, value: Any
    ) -> None:
        cache.set("n", value, 50)
        with pytest.raises(ValueError, match="not an integer"):
            cache.incr("n", 1, 10)
        assert_same_value(cache.get("n"), value)
        assert cache.ttl("n") == pytest.approx(50)

    @pytest.mark.parametrize("amount", [True, 1.0, "1", None, 2.5], ids=value_id)
    def test_incr_with_a_non_int_amount_raises_type_error_and_changes_nothing(
        self, cache: CacheBackend, amount: Any
    ) -> None:
        cache.set("n", 1)
        with pytest.raises(TypeError):
            cache.incr("n", amount)
        with pytest.raises(TypeError):
            cache.incr("missing", amount)
        assert_same_value(cache.get("n"), 1)
        assert not cache.exists("missing")

    def test_incr_up_to_int64_max_is_allowed(self, cache: CacheBackend) -> None:
        cache.set("n", INT64_MAX - 1)
        assert cache.incr("n") == INT64_MAX
        assert cache.get("n") == INT64_MAX

    def test_incr_down_to_int64_min_is_allowed(self, cache: CacheBackend) -> None:
        cache.set("n", INT64_MIN + 1)
        assert cache.incr("n", -1) == INT64_MIN

    @pytest.mark.parametrize(
        ("start", "amount"),
        [(INT64_MAX, 1), (1, INT64_MAX), (INT64_MIN, -1), (-2, INT64_MIN), (INT64_MAX, INT64_MAX)],
    )
    def test_incr_past_64_bits_raises_value_error_and_changes_nothing(
        self, cache: CacheBackend, start: int, amount: int
    ) -> None:
        cache.set("n", start, 50)
        with pytest.raises(ValueError, match="64-bit"):
            cache.incr("n", amount)
        assert_same_value(cache.get("n"), start)
        assert cache.ttl("n") == pytest.approx(50)

    @pytest.mark.parametrize("amount", [2**63, -(2**63) - 1, 2**100], ids=value_id)
    def test_incr_amount_outside_64_bits_raises_value_error(self, cache: CacheBackend, amount: int) -> None:
        with pytest.raises(ValueError, match="64-bit"):
            cache.incr("n", amount)
        assert not cache.exists("n")

    def test_incr_is_atomic_across_threads(self, cache: CacheBackend) -> None:
        threads, per_thread = 4, 250
        results: list[list[int]] = [[] for _ in range(threads)]

        def work(index: int) -> None:
            results[index].extend(cache.incr("n") for _ in range(per_thread))

        workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert cache.get("n") == threads * per_thread
        assert sorted(value for result in results for value in result) == list(
            range(1, threads * per_thread + 1)
        )

    # -- delete --------------------------------------------------------------------------------

    def test_delete_of_a_live_key_returns_true_and_removes_it(self, cache: CacheBackend) -> None:
        cache.set("k", 1)
        cache.get("k")
        assert cache.delete("k") is True
        assert cache.get("k") is None
        assert not cache.exists("k")

    def test_delete_of_a_missing_key_returns_false(self, cache: CacheBackend) -> None:
        assert cache.delete("missing") is False

    def test_delete_of_an_expired_key_returns_false(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("k", 1, 10)
        clock.advance(10)
        assert cache.delete("k") is False

    def test_second_delete_returns_false(self, cache: CacheBackend) -> None:
        cache.set("k", 1)
        assert cache.delete("k") is True
        assert cache.delete("k") is False

    def test_delete_leaves_other_keys(self, cache: CacheBackend) -> None:
        cache.set_many({"k": 1, "k2": 2, "j": 3})
        cache.delete("k")
        assert cache.keys() == ["j", "k2"]

    # -- get_many ------------------------------------------------------------------------------

    def test_get_many_returns_only_live_keys(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("live", 1, 100)
        cache.set("expired", 2, 10)
        cache.set("none", None, 100)
        clock.advance(10)
        assert cache.get_many(["live", "expired", "missing", "none"]) == {"live": 1, "none": None}

    def test_get_many_of_no_keys_is_empty(self, cache: CacheBackend) -> None:
        cache.set("k", 1)
        assert cache.get_many([]) == {}

    def test_get_many_accepts_a_generator_with_duplicates(self, cache: CacheBackend) -> None:
        cache.set_many({"a": 1, "b": 2})
        assert cache.get_many(key for key in ["a", "b", "a", "c"]) == {"a": 1, "b": 2}

    def test_get_many_keeps_value_types(self, cache: CacheBackend) -> None:
        values = {"s": "123", "i": 123, "f": 123.0, "b": True, "y": b"123", "l": (1, 2)}
        cache.set_many(values)
        result = cache.get_many(values)
        for key, value in values.items():
            assert_same_value(result[key], value)

    def test_get_many_returns_every_live_key_of_a_large_batch(self, cache: CacheBackend) -> None:
        cache.set_many({f"k{index:04}": index for index in range(1200)})
        wanted = [f"k{index:04}" for index in range(1300)]
        assert cache.get_many(wanted) == {f"k{index:04}": index for index in range(1200)}

    # -- set_many ------------------------------------------------------------------------------

    def test_set_many_stores_every_item_with_the_ttl(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set_many({"a": 1, "b": "two", "c": [3]}, 10)
        assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": "two", "c": [3]}
        assert [cache.ttl(key) for key in "abc"] == [pytest.approx(10)] * 3
        clock.advance(10)
        assert cache.keys() == []

    def test_set_many_without_ttl_uses_the_default_ttl(self, cache: CacheBackend) -> None:
        cache.set_many({"a": 1, "b": 2})
        assert cache.ttl("a") == pytest.approx(DEFAULT_TTL)
        assert cache.ttl("b") == pytest.approx(DEFAULT_TTL)

    def test_set_many_replaces_existing_values_and_expiry(
        self, cache: CacheBackend, clock: FakeClock
    ) -> None:
        cache.set("a", "old", 5)
        cache.set_many({"a": "new", "b": 1}, 50)
        clock.advance(5)
        assert cache.get("a") == "new"

    @pytest.mark.parametrize(
        ("bad_key", "bad_value", "error"),
        [
            ("bad", [b"nested"], TypeError),
            ("bad", {1: "x"}, TypeError),
            ("bad", _Opaque(), TypeError),
            ("bad", math.nan, ValueError),
            ("bad", "x" * (MAX_VALUE_BYTES + 1), ValueError),
            ("", 1, ValueError),
            ("k" * 513, 1, ValueError),
            (1, 1, TypeError),
        ],
        ids=["nested-bytes", "int-dict-key", "object", "nan", "oversize", "empty-key", "long-key", "int-key"],
    )
    def test_set_many_with_one_bad_item_stores_nothing(
        self, cache: CacheBackend, bad_key: Any, bad_value: Any, error: type[Exception]
    ) -> None:
        cache.set("existing", "before")
        items = {"existing": "after", "fresh": 1, bad_key: bad_value}
        with pytest.raises(error):
            cache.set_many(items)
        assert cache.get("existing") == "before"
        assert cache.keys() == ["existing"]

    @pytest.mark.parametrize("ttl", INVALID_TTLS, ids=value_id)
    def test_set_many_with_an_invalid_ttl_stores_nothing(self, cache: CacheBackend, ttl: float) -> None:
        with pytest.raises(ValueError, match="ttl"):
            cache.set_many({"a": 1, "b": 2}, ttl)
        assert cache.keys() == []

    def test_set_many_of_no_items_changes_nothing(self, cache: CacheBackend) -> None:
        cache.set("k", 1)
        cache.set_many({})
        assert cache.keys() == ["k"]

    # -- clear_pattern -------------------------------------------------------------------------

    def test_clear_pattern_removes_only_keys_with_the_prefix(self, cache: CacheBackend) -> None:
        cache.set_many({"user:1:a": 1, "user:1:b": 2, "user:10:a": 3, "user:2:a": 4, "user:1": 5})
        for key in ["user:1:a", "user:10:a"]:
            cache.get(key)
        assert cache.clear_pattern("user:1:") == 2
        assert cache.keys() == ["user:1", "user:10:a", "user:2:a"]
        assert cache.get("user:1:a") is None
        assert cache.get("user:10:a") == 3

    def test_clear_pattern_underscore_does_not_match_any_character(self, cache: CacheBackend) -> None:
        cache.set_many({"user:1_": 1, "user:1_x": 2, "user:1a": 3, "user:1ab": 4})
        assert cache.clear_pattern("user:1_") == 2
        assert cache.keys() == ["user:1a", "user:1ab"]

    @pytest.mark.parametrize("wildcard", WILDCARD_CHARACTERS)
    def test_clear_pattern_treats_wildcard_characters_literally(
        self, cache: CacheBackend, wildcard: str
    ) -> None:
        literal = f"a{wildcard}"
        cache.set_many({literal: 1, f"{literal}]x": 2, "a": 3, "ab": 4, "abc]": 5, "a]": 6, "b": 7})
        assert cache.clear_pattern(literal) == 2
        assert cache.keys() == sorted(["a", "ab", "abc]", "a]", "b"])

    def test_clear_pattern_is_case_sensitive(self, cache: CacheBackend) -> None:
        cache.set_many({"User:1": 1, "user:1": 2, "USER:1": 3})
        assert cache.clear_pattern("user:") == 1
        assert cache.keys() == ["USER:1", "User:1"]

    def test_clear_pattern_with_an_empty_prefix_raises_value_error(self, cache: CacheBackend) -> None:
        cache.set_many({"a": 1, "b": 2})
        with pytest.raises(ValueError, match="prefix"):
            cache.clear_pattern("")
        assert cache.keys() == ["a", "b"]

    def test_clear_pattern_counts_only_live_entries(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set_many({"p:live1": 1, "p:live2": 2}, 100)
        cache.set("p:expired", 3, 10)
        clock.advance(10)
        assert cache.clear_pattern("p:") == 2

    def test_clear_pattern_also_removes_expired_matches(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("p:expired", 3, 10)
        cache.set("q:expired", 4, 10)
        clock.advance(10)
        cache.clear_pattern("p:")
        assert cache.purge_expired() == 1

    def test_clear_pattern_without_matches_returns_zero(self, cache: CacheBackend) -> None:
        cache.set("a", 1)
        assert cache.clear_pattern("b") == 0
        assert cache.keys() == ["a"]

    def test_clear_pattern_with_a_whole_key_removes_it_and_its_extensions(self, cache: CacheBackend) -> None:
        cache.set_many({"ab": 1, "abc": 2, "a": 3, "b": 4})
        assert cache.clear_pattern("ab") == 2
        assert cache.keys() == ["a", "b"]

    def test_clear_pattern_with_the_highest_code_point_is_literal(self, cache: CacheBackend) -> None:
        top = "\U0010ffff"
        cache.set_many({f"a{top}": 1, f"a{top}x": 2, f"a{top}{top}": 3, "a\U0010fffe": 4, "b": 5, "a": 6})
        assert cache.clear_pattern(f"a{top}") == 3
        assert cache.keys() == ["a", "a\U0010fffe", "b"]

    def test_clear_pattern_with_non_ascii_prefix(self, cache: CacheBackend) -> None:
        cache.set_many({"é:1": 1, "é:2": 2, "éa": 3, "e:1": 4, "ê:1": 5})
        assert cache.clear_pattern("é:") == 2
        assert cache.keys() == ["e:1", "éa", "ê:1"]

    # -- keys ----------------------------------------------------------------------------------

    def test_keys_are_sorted(self, cache: CacheBackend) -> None:
        names = ["b", "a", "B", "a:2", "a:10", "é", "z", "_", "~", "😀", "A"]
        for name in names:
            cache.set(name, 1)
        assert cache.keys() == sorted(names)

    def test_keys_list_only_live_entries(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set("live", 1, 100)
        cache.set("expired", 1, 10)
        clock.advance(10)
        assert cache.keys() == ["live"]

    def test_keys_with_a_prefix_list_only_matching_keys(self, cache: CacheBackend) -> None:
        cache.set_many({"user:1:a": 1, "user:1:b": 2, "user:10:a": 3, "user:2": 4})
        assert cache.keys("user:1:") == ["user:1:a", "user:1:b"]
        assert cache.keys("user:1") == sorted(["user:1:a", "user:1:b", "user:10:a"])

    @pytest.mark.parametrize("wildcard", WILDCARD_CHARACTERS)
    def test_keys_prefix_treats_wildcard_characters_literally(
        self, cache: CacheBackend, wildcard: str
    ) -> None:
        cache.set_many({f"a{wildcard}1": 1, "a": 2, "ab": 3, "a]": 4})
        assert cache.keys(f"a{wildcard}") == [f"a{wildcard}1"]

    def test_keys_prefix_is_case_sensitive(self, cache: CacheBackend) -> None:
        cache.set_many({"Ab": 1, "ab": 2})
        assert cache.keys("a") == ["ab"]

    def test_keys_of_an_empty_cache_is_empty(self, cache: CacheBackend) -> None:
        assert cache.keys() == []
        assert cache.keys("x") == []

    # -- purge_expired and clear ---------------------------------------------------------------

    def test_purge_expired_returns_the_number_removed(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set_many({"a": 1, "b": 2, "c": 3}, 10)
        cache.set_many({"d": 4, "e": 5}, 100)
        clock.advance(10)
        assert cache.purge_expired() == 3

    def test_purge_expired_keeps_live_entries(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set_many({"a": 1, "b": 2}, 10)
        cache.set_many({"d": 4, "e": 5}, 100)
        clock.advance(10)
        cache.purge_expired()
        assert cache.get_many(["a", "b", "d", "e"]) == {"d": 4, "e": 5}
        assert cache.stats()["entries"] == 2

    def test_second_purge_expired_removes_nothing(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set_many({"a": 1, "b": 2}, 10)
        clock.advance(10)
        cache.purge_expired()
        assert cache.purge_expired() == 0

    def test_purge_expired_with_nothing_expired_returns_zero(self, cache: CacheBackend) -> None:
        cache.set("a", 1)
        assert cache.purge_expired() == 0
        assert cache.get("a") == 1

    def test_clear_removes_every_entry(self, cache: CacheBackend) -> None:
        cache.set_many({"a": 1, "b": 2, "user:1:x": 3})
        cache.get("a")
        cache.clear()
        assert cache.keys() == []
        assert cache.get("a") is None
        assert cache.stats()["entries"] == 0

    def test_cache_is_usable_after_clear(self, cache: CacheBackend) -> None:
        cache.set("a", 1)
        cache.clear()
        cache.set("a", 2)
        assert cache.incr("n") == 1
        assert cache.get("a") == 2

    # -- stats ---------------------------------------------------------------------------------

    def test_stats_report_the_common_counters_as_ints(self, cache: CacheBackend) -> None:
        stats = cache.stats()
        assert set(stats) >= COMMON_STATS
        assert all(type(value) is int for value in stats.values())

    def test_stats_entries_count_only_live_entries(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set_many({"a": 1, "b": 2, "c": 3}, 100)
        cache.set("d", 4, 10)
        clock.advance(10)
        assert cache.stats()["entries"] == 3

    def test_stats_count_misses(self, cache: CacheBackend) -> None:
        before = cache.stats()["misses"]
        cache.get("missing")
        assert cache.stats()["misses"] == before + 1

    def test_stats_count_sets(self, cache: CacheBackend) -> None:
        before = cache.stats()["sets"]
        cache.set("a", 1)
        cache.set_many({"b": 1, "c": 2})
        assert cache.stats()["sets"] == before + 3

    def test_stats_count_deletes(self, cache: CacheBackend) -> None:
        cache.set_many({"a": 1, "p:1": 2, "p:2": 3})
        before = cache.stats()["deletes"]
        cache.delete("a")
        cache.clear_pattern("p:")
        assert cache.stats()["deletes"] == before + 3

    def test_stats_count_expired_purged(self, cache: CacheBackend, clock: FakeClock) -> None:
        cache.set_many({"a": 1, "b": 2}, 10)
        before = cache.stats()["expired_purged"]
        clock.advance(10)
        cache.purge_expired()
        assert cache.stats()["expired_purged"] == before + 2
