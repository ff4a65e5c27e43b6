"""The store contract against SQLite and memory, plus what only the SQLite store promises."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.core.rate_limit_memory import MemoryRateLimitStore
from api.core.rate_limit_policy import Policy
from api.core.rate_limit_store import (
    Hit,
    RateLimitStore,
    RateLimitStoreError,
    SQLiteRateLimitStore,
    build_rate_limit_store,
)
from api.core.session_cache import SessionCache
from tests.conftest import make_settings
from tests.core.rate_limit_store_contract import PER_MINUTE, RateLimitStoreContract
from tests.support.clock import FakeClock

HOURLY = Policy("hourly", 100, 3600)


class TestSQLiteStore(RateLimitStoreContract):
    @pytest.fixture
    def store(self, clock: FakeClock, tmp_path: Path) -> Iterator[RateLimitStore]:
        store = SQLiteRateLimitStore(tmp_path / "ret_session.db", clock=clock)
        yield store
        store.close()


class TestMemoryStore(RateLimitStoreContract):
    @pytest.fixture
    def store(self, clock: FakeClock) -> RateLimitStore:
        return MemoryRateLimitStore(clock=clock)


def test_buckets_live_beside_the_session_cache_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "ret_session.db"
    cache = SessionCache(path, 10, default_ttl=60, max_value_bytes=1024)
    store = SQLiteRateLimitStore(path)
    try:
        cache.set("user:1:x", 1)
        assert store.hit("ip:1", [PER_MINUTE], 1).admitted
        assert cache.get("user:1:x") == 1
        tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
        assert {"session_cache", "rate_limit_v1"} <= tables
    finally:
        store.close()
        cache.close()


def test_two_stores_on_one_file_share_buckets(tmp_path: Path) -> None:
    first, second = (SQLiteRateLimitStore(tmp_path / "s.db") for _ in range(2))
    try:
        assert first.hit("k", [PER_MINUTE], 3).admitted
        assert not second.hit("k", [PER_MINUTE], 1).admitted
        assert second.reset("k") == 1
        assert first.hit("k", [PER_MINUTE], 3).admitted
    finally:
        first.close()
        second.close()


def test_concurrent_threads_get_exactly_the_capacity(tmp_path: Path) -> None:
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    admitted: list[bool] = []
    lock = threading.Lock()

    def hammer(policies: list[Policy]) -> None:
        for _ in range(50):
            outcome = store.hit("k", policies, 1)
            with lock:
                admitted.append(outcome.admitted)

    threads = [threading.Thread(target=hammer, args=([HOURLY],)) for _ in range(4)]
    threads += [
        threading.Thread(target=hammer, args=([HOURLY, Policy("daily", 500, 86400)],)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert admitted.count(True) == 100


def test_each_thread_learns_the_tat_of_its_own_hit(tmp_path: Path) -> None:
    # A live bucket's new tat comes back through a function of the connection; threads hitting
    # their own keys at once must each see their own bucket move by one interval per hit.
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    store.hit("warm", [HOURLY], 1)
    steps: dict[str, set[int]] = {}
    start = threading.Barrier(4, timeout=30)

    def hammer(key: str) -> None:
        start.wait()
        tats = [store.hit(key, [HOURLY], 1).tats[0] for _ in range(100)]
        steps[key] = {later - earlier for earlier, later in itertools.pairwise(tats)}

    threads = [threading.Thread(target=hammer, args=(f"key-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert steps == {f"key-{n}": {HOURLY.interval_ns} for n in range(4)}


def _hit_in_child(path: Path, hits: int, batch: int, results: multiprocessing.Queue[int]) -> None:
    store = SQLiteRateLimitStore(path)
    if batch == 1:
        results.put(sum(store.hit("shared", [HOURLY], 1).admitted for _ in range(hits)))
    else:
        outcomes = [store.hit_batch([Hit("shared", [HOURLY])] * batch) for _ in range(hits // batch)]
        results.put(sum(outcome.admitted for batch_outcomes in outcomes for outcome in batch_outcomes))
    store.close()


@pytest.mark.parametrize("batch", [1, 3])
def test_concurrent_processes_get_exactly_the_capacity(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "s.db"
    SQLiteRateLimitStore(path).close()
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[int] = context.Queue()
    children = [context.Process(target=_hit_in_child, args=(path, 60, batch, results)) for _ in range(4)]
    for child in children:
        child.start()
    counts = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert sum(counts) == 100


def test_unusable_file_fails_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database" * 300)
    with pytest.raises(RateLimitStoreError, match=str(path)):
        SQLiteRateLimitStore(path)


def test_storage_failure_raises_store_error(tmp_path: Path) -> None:
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    store.close()
    with pytest.raises(RateLimitStoreError, match="closed"):
        store.hit("k", [PER_MINUTE], 1)
    with pytest.raises(RateLimitStoreError):
        store.buckets("k")


def test_settings_pick_the_backend(tmp_path: Path) -> None:
    sqlite_store = build_rate_limit_store(make_settings(tmp_path))
    assert isinstance(sqlite_store, SQLiteRateLimitStore)
    assert sqlite_store.path == tmp_path / "runtime" / "ret_session.db"
    sqlite_store.close()
    memory = build_rate_limit_store(make_settings(tmp_path, ret_session_backend="memory"))
    assert isinstance(memory, MemoryRateLimitStore)


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_hit_that_meets_a_held_write_lock_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.core.rate_limit_store as rate_limit_store
    from api.core.sqlite import retry_while_busy as real_retry

    store = SQLiteRateLimitStore(tmp_path / "s.db")
    store.hit("k", [PER_MINUTE], 1)
    holder = _hold_write_lock(tmp_path / "s.db")
    retried: list[str] = []

    def release_then_retry(*args: object, **kwargs: object) -> object:
        retried.append("busy")  # the first attempt met the lock: free it, then retry as usual
        holder.execute("COMMIT")
        return real_retry(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rate_limit_store, "retry_while_busy", release_then_retry)
    outcome = store.hit("k", [PER_MINUTE], 1)
    assert retried == ["busy"]
    assert outcome.admitted
    assert store.buckets("k")[1][0].tat_ns == outcome.tats[0]
    holder.close()
    store.close()


def test_a_write_lock_held_past_the_busy_timeout_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    store.hit("k", [PER_MINUTE], 1)
    before = store.buckets("k")[1]
    store._connections.busy_timeout = 0.05
    holder = _hold_write_lock(tmp_path / "s.db")
    with pytest.raises(RateLimitStoreError, match="locked"):
        store.hit("k", [PER_MINUTE], 1)
    holder.execute("ROLLBACK")
    assert store.buckets("k")[1] == before  # nothing was consumed
    holder.close()
    store.close()


def test_a_batch_is_one_write_transaction(tmp_path: Path) -> None:
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    statements: list[str] = []
    store._connections.get().set_trace_callback(statements.append)
    store.hit_batch([Hit("a", [PER_MINUTE]), Hit("b", [PER_MINUTE, HOURLY]), Hit("a", [PER_MINUTE])])
    transactions = [sql for sql in statements if sql in ("BEGIN IMMEDIATE", "COMMIT")]
    assert transactions == ["BEGIN IMMEDIATE", "COMMIT"]
    store.close()


def test_a_batch_that_meets_a_held_write_lock_fails_whole(tmp_path: Path) -> None:
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    store._connections.busy_timeout = 0.05
    holder = _hold_write_lock(tmp_path / "s.db")
    with pytest.raises(RateLimitStoreError, match="locked"):
        store.hit_batch([Hit("a", [PER_MINUTE]), Hit("b", [PER_MINUTE])])
    holder.execute("ROLLBACK")
    assert store.count() == 0  # nothing was consumed
    assert [outcome.admitted for outcome in store.hit_batch([Hit("a", [PER_MINUTE])])] == [True]
    holder.close()
    store.close()


def test_a_batch_that_fails_midway_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    decide = store._decide
    calls: list[str] = []

    def failing_second(connection: sqlite3.Connection, key: str, *rest: object) -> object:
        calls.append(key)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return decide(connection, key, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_decide", failing_second)
    with pytest.raises(RateLimitStoreError, match="disk I/O error"):
        store.hit_batch([Hit("a", [PER_MINUTE]), Hit("b", [PER_MINUTE]), Hit("c", [PER_MINUTE])])
    assert calls == ["a", "b"]
    assert store.count() == 0  # the first hit's write was rolled back with the batch
    store.close()


def test_a_batch_of_one_is_decided_without_an_explicit_transaction(tmp_path: Path) -> None:
    store = SQLiteRateLimitStore(tmp_path / "s.db")
    statements: list[str] = []
    store._connections.get().set_trace_callback(statements.append)
    assert [outcome.admitted for outcome in store.hit_batch([Hit("a", [PER_MINUTE])])] == [True]
    assert "BEGIN IMMEDIATE" not in statements
    store.close()
