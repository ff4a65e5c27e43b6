"""SessionCache: the shared contract (L1 off, small and default), plus what only the SQLite store has:
two levels, stats, the file on disk, loud failures, one cache per process and fork safety."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.core import cache_codec
from api.core.cache_contract import SessionCacheError
from api.core.config import Settings, get_settings
from api.core.session_cache import (
    CULL_EVERY_WRITES,
    CULL_WINDOW,
    PER_KEY_INVALIDATION_LIMIT,
    SCHEMA_VERSION,
    SessionCache,
    clear_cache_pattern,
    delete_cache,
    get_cache,
    get_session_cache,
    install_session_cache,
    set_cache,
)
from tests.conftest import make_settings

pytest.register_assert_rewrite("tests.core.cache_contract")  # plain asserts in the mixin report values

from tests.core.cache_contract import (  # noqa: E402
    DEFAULT_TTL,
    MAX_VALUE_BYTES,
    CacheContract,
    CacheFactory,
    FakeClock,
)

DEFAULT_MAX_SIZE: int = Settings.model_fields["session_cache_max_size"].default

CacheMaker = Callable[..., SessionCache]


@pytest.fixture(scope="module", params=[0, 3, DEFAULT_MAX_SIZE], ids=lambda size: f"max_size={size}")
def contract_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, int]]:
    """One file per L1 size: creating (and checkpointing) a fresh SQLite file costs two fsyncs, about
    20 ms on this disk, which would dominate the ~900 contract tests. A keeper instance holds the file
    open; each test gets a new instance (fresh L1 and counters) on an emptied store."""
    path = tmp_path_factory.mktemp("contract") / "session.db"
    keeper = SessionCache(path, 0, default_ttl=DEFAULT_TTL, max_value_bytes=MAX_VALUE_BYTES)
    yield path, request.param
    keeper.close()


class TestSessionCacheContract(CacheContract):
    @pytest.fixture
    def cache_factory(self, contract_store: tuple[Path, int]) -> Iterator[CacheFactory]:
        path, max_size = contract_store
        built: list[SessionCache] = []

        def factory(clock: FakeClock) -> SessionCache:
            cache = SessionCache(
                path, max_size, default_ttl=DEFAULT_TTL, clock=clock, max_value_bytes=MAX_VALUE_BYTES
            )
            built.append(cache)
            cache.clear()
            return cache

        yield factory
        for cache in built:
            cache.close()


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "session.db"


@pytest.fixture
def make_cache(db_path: Path, clock: FakeClock) -> Iterator[CacheMaker]:
    """Open caches on ``db_path`` (every one sees the same file, like separate processes)."""
    built: list[SessionCache] = []

    def make(max_size: int = 100, path: Path | None = None) -> SessionCache:
        cache = SessionCache(
            path or db_path, max_size, default_ttl=DEFAULT_TTL, clock=clock, max_value_bytes=MAX_VALUE_BYTES
        )
        built.append(cache)
        return cache

    yield make
    for cache in built:
        cache.close()


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a fresh sqlite3 connection, as an operator's shell would."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def execute_script(path: Path, script: str) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.executescript(script)
    finally:
        connection.close()


# -- two levels ------------------------------------------------------------------------------------


def test_l1_eviction_never_loses_l2_entries(make_cache: CacheMaker) -> None:
    cache = make_cache(max_size=10)
    count = 20_000
    cache.set_many({f"key:{index}": {"index": index} for index in range(count)})
    for index in range(count):
        assert cache.get(f"key:{index}") == {"index": index}
    for index in range(0, count, 7):  # and again, in a different order
        assert cache.get(f"key:{index}") == {"index": index}
    assert cache.stats()["entries"] == count


def test_l1_never_holds_more_than_max_size_entries(make_cache: CacheMaker) -> None:
    cache = make_cache(max_size=10)
    cache.set_many({f"key:{index}": index for index in range(50)})
    for index in range(50):
        cache.get(f"key:{index}")
    assert cache.stats()["l1_size"] == 10


def test_l1_keeps_the_most_recently_read_entries(make_cache: CacheMaker) -> None:
    cache = make_cache(max_size=2)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    cache.get("a")
    cache.get("b")
    cache.get("a")  # b is now the least recently used
    cache.get("c")
    hits_before = cache.stats()["hits_l1"]
    cache.get("a")
    cache.get("c")
    assert cache.stats()["hits_l1"] == hits_before + 2


def test_max_size_zero_turns_l1_off(make_cache: CacheMaker) -> None:
    cache = make_cache(max_size=0)
    cache.set("k", 1)
    for _ in range(3):
        assert cache.get("k") == 1
    stats = cache.stats()
    assert (stats["hits_l1"], stats["hits_l2"], stats["l1_size"]) == (0, 3, 0)


def test_negative_max_size_is_rejected(db_path: Path) -> None:
    with pytest.raises(ValueError, match="max_size"):
        SessionCache(db_path, -1, default_ttl=DEFAULT_TTL, max_value_bytes=MAX_VALUE_BYTES)


# -- stats -----------------------------------------------------------------------------------------


def test_first_read_is_an_l2_hit_and_the_next_an_l1_hit(make_cache: CacheMaker) -> None:
    cache = make_cache()
    cache.set("k", 1)
    cache.get("k")
    assert (cache.stats()["hits_l2"], cache.stats()["hits_l1"]) == (1, 0)
    cache.get("k")
    assert (cache.stats()["hits_l2"], cache.stats()["hits_l1"]) == (1, 1)


def test_stats_count_misses_of_missing_and_expired_keys(make_cache: CacheMaker, clock: FakeClock) -> None:
    cache = make_cache()
    cache.set("k", 1, 10)
    cache.get("k")
    clock.advance(10)
    cache.get("k")
    cache.get("missing")
    assert cache.stats()["misses"] == 2


def test_stats_count_l1_evictions(make_cache: CacheMaker) -> None:
    cache = make_cache(max_size=2)
    cache.set_many({"a": 1, "b": 2, "c": 3, "d": 4})
    for key in "abcd":
        cache.get(key)
    assert cache.stats()["l1_evictions"] == 2


def test_stats_count_expired_rows_culled_by_writes(make_cache: CacheMaker, clock: FakeClock) -> None:
    cache = make_cache()
    cache.set_many({f"old:{index}": index for index in range(10)}, 10)
    clock.advance(10)
    for index in range(CULL_EVERY_WRITES):
        cache.set(f"new:{index}", index)
    assert cache.stats()["expired_purged"] == 10


def test_stats_entries_are_shared_but_counters_are_per_instance(make_cache: CacheMaker) -> None:
    writer, reader = make_cache(), make_cache()
    writer.set_many({"a": 1, "b": 2, "c": 3})
    writer.get("a")
    stats = reader.stats()
    assert stats["entries"] == 3
    assert (stats["sets"], stats["hits_l2"], stats["hits_l1"]) == (0, 0, 0)


def test_stats_report_every_documented_counter(make_cache: CacheMaker) -> None:
    expected = {"hits_l1", "hits_l2", "misses", "sets", "deletes", "l1_evictions", "expired_purged"}
    assert expected | {"l1_size", "entries"} <= set(make_cache().stats())


# -- coherence between instances on one file -------------------------------------------------------

WRITES_SEEN_BY_OTHERS: dict[str, tuple[Callable[[SessionCache], object], object]] = {
    "set": (lambda cache: cache.set("k", "new"), "new"),
    "set_many": (lambda cache: cache.set_many({"k": 5, "j": 6}), 5),
    "incr": (lambda cache: cache.incr("k", 10), 11),
    "delete": (lambda cache: cache.delete("k"), None),
    "clear_pattern": (lambda cache: cache.clear_pattern("k"), None),
    "clear": (lambda cache: cache.clear(), None),
}


@pytest.mark.parametrize("operation", list(WRITES_SEEN_BY_OTHERS))
def test_write_through_another_instance_replaces_the_l1_copy(make_cache: CacheMaker, operation: str) -> None:
    writer, reader = make_cache(), make_cache()
    writer.set("k", 1)
    assert reader.get("k") == 1
    assert reader.get("k") == 1
    assert reader.stats()["hits_l1"] == 1  # the reader really holds k in L1
    write, expected = WRITES_SEEN_BY_OTHERS[operation]
    write(writer)
    assert reader.get("k") == expected
    assert reader.get_many(["k"]) == ({} if expected is None else {"k": expected})


def test_touch_through_another_instance_replaces_the_l1_expiry(
    make_cache: CacheMaker, clock: FakeClock
) -> None:
    writer, reader = make_cache(), make_cache()
    writer.set("k", 1, 10)
    reader.get("k")
    writer.touch("k", 500)
    clock.advance(10)
    assert reader.get("k") == 1
    assert reader.ttl("k") == pytest.approx(490)


def test_write_through_the_same_instance_replaces_its_l1_copy(make_cache: CacheMaker) -> None:
    cache = make_cache()
    cache.set("k", 1)
    cache.get("k")
    cache.get("k")
    cache.set("k", 2)
    assert cache.get("k") == 2
    assert cache.get("k") == 2


def test_clear_pattern_of_more_keys_than_per_key_invalidation_empties_another_instance_l1(
    make_cache: CacheMaker,
) -> None:
    count = PER_KEY_INVALIDATION_LIMIT + 100
    writer, reader = make_cache(), make_cache(max_size=count + 10)
    writer.set_many({f"session:1:{index}": index for index in range(count)})
    writer.set("session:2:kept", "kept")
    assert len(reader.get_many(f"session:1:{index}" for index in range(count))) == count
    assert writer.clear_pattern("session:1:") == count
    assert reader.get_many(f"session:1:{index}" for index in range(count)) == {}
    assert reader.get("session:2:kept") == "kept"


def test_clear_local_shows_writes_made_outside_the_cache(make_cache: CacheMaker, db_path: Path) -> None:
    cache = make_cache()
    cache.set("k", 1)
    cache.get("k")
    execute_script(
        db_path, f"UPDATE session_cache SET kind = {cache_codec.KIND_INT}, value = 2 WHERE key = 'k'"
    )
    cache.clear_local()
    assert cache.get("k") == 2


def test_entries_survive_closing_and_reopening(make_cache: CacheMaker) -> None:
    first = make_cache()
    first.set_many({"a": {"x": 1}, "b": b"bytes"})
    first.incr("n", 5)
    first.close()
    second = make_cache()
    assert second.get_many(["a", "b", "n"]) == {"a": {"x": 1}, "b": b"bytes", "n": 5}


# -- the file on disk ------------------------------------------------------------------------------


def test_table_named_session_cache_is_readable_with_sqlite3(make_cache: CacheMaker, db_path: Path) -> None:
    cache = make_cache()
    cache.set_many({"user:1:a": 1, "user:1:b": "two", "rate:x": [3]})
    assert query(db_path, "SELECT COUNT(*) FROM session_cache") == [(3,)]
    assert query(db_path, "SELECT key FROM session_cache ORDER BY key") == [
        ("rate:x",),
        ("user:1:a",),
        ("user:1:b",),
    ]


def test_numeric_string_is_stored_as_text(make_cache: CacheMaker, db_path: Path) -> None:
    make_cache().set("k", "123")
    assert query(db_path, "SELECT typeof(value), value FROM session_cache") == [("text", "123")]


def test_database_is_in_wal_mode(make_cache: CacheMaker, db_path: Path) -> None:
    make_cache()
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_schema_version_is_recorded_in_user_version(make_cache: CacheMaker, db_path: Path) -> None:
    make_cache()
    assert SCHEMA_VERSION >= 1
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_newer_schema_version_is_refused_naming_the_path(make_cache: CacheMaker, db_path: Path) -> None:
    make_cache().close()
    execute_script(db_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SessionCacheError, match="schema version") as raised:
        make_cache()
    assert str(db_path) in str(raised.value)


def test_purge_expired_leaves_no_dead_rows_in_the_file(
    make_cache: CacheMaker, db_path: Path, clock: FakeClock
) -> None:
    cache = make_cache()
    cache.set_many({f"dead:{index}": index for index in range(500)}, 10)
    cache.set_many({f"live:{index}": index for index in range(5)}, 100)
    clock.advance(10)
    assert cache.purge_expired() == 500
    assert query(db_path, "SELECT COUNT(*) FROM session_cache") == [(5,)]


def test_writes_cull_expired_rows_without_a_sweep(
    make_cache: CacheMaker, db_path: Path, clock: FakeClock
) -> None:
    cache = make_cache()
    dead = 2 * CULL_WINDOW
    cache.set_many({f"dead:{index:04}": index for index in range(dead)}, 10)
    clock.advance(10)
    for index in range(2 * CULL_EVERY_WRITES):
        cache.set(f"live:{index}", index)
    assert query(db_path, "SELECT COUNT(*) FROM session_cache WHERE key LIKE 'dead:%'") == [(0,)]


def test_write_culling_walks_the_whole_table_and_wraps_around(
    make_cache: CacheMaker, db_path: Path, clock: FakeClock
) -> None:
    cache = make_cache()
    # Three windows of live keys in the middle, dead keys at both ends of the key order.
    cache.set_many({f"m:{index:04}": index for index in range(3 * CULL_WINDOW)}, 1000)
    cache.set_many(
        {f"a:{index}": index for index in range(10)} | {f"z:{index}": index for index in range(10)}, 10
    )
    clock.advance(10)
    writes = 0
    while query(db_path, "SELECT COUNT(*) FROM session_cache WHERE expires_at <= ?", (clock(),)) != [(0,)]:
        cache.set("m:0000", writes, 1000)
        writes += 1
        assert writes <= 6 * CULL_EVERY_WRITES, "culling never reached some expired rows"
    # The a: keys were reached on the first window; the z: keys only after passing the middle.
    assert writes > 3 * CULL_EVERY_WRITES - CULL_EVERY_WRITES
    assert cache.stats()["expired_purged"] == 20
    assert cache.stats()["entries"] == 3 * CULL_WINDOW


def test_a_version_1_file_is_upgraded_in_place_keeping_its_entries(db_path: Path, clock: FakeClock) -> None:
    expires_at = clock() + 100
    execute_script(
        db_path,
        "CREATE TABLE session_cache (key TEXT PRIMARY KEY NOT NULL, kind INTEGER NOT NULL, value NOT NULL,"
        " expires_at REAL NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX session_cache_expires_at ON session_cache (expires_at);"
        f"INSERT INTO session_cache VALUES ('kept', {cache_codec.KIND_INT}, 7, {expires_at});"
        "PRAGMA user_version = 1;",
    )
    cache = SessionCache(db_path, 10, default_ttl=DEFAULT_TTL, clock=clock, max_value_bytes=MAX_VALUE_BYTES)
    assert cache.get("kept") == 7
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert (
        query(
            db_path,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
        )
        == []
    )
    cache.close()


def test_file_does_not_grow_with_dead_entries(
    make_cache: CacheMaker, db_path: Path, clock: FakeClock
) -> None:
    cache = make_cache()

    def expire_a_generation(generation: int) -> int:
        cache.set_many({f"gen{generation}:{index}": "x" * 200 for index in range(2000)}, 10)
        clock.advance(10)
        cache.purge_expired()
        return int(query(db_path, "PRAGMA page_count")[0][0])

    first = expire_a_generation(0)
    later = [expire_a_generation(generation) for generation in range(1, 6)]
    assert max(later) <= first


# -- failures are loud -----------------------------------------------------------------------------


def test_corrupt_file_raises_session_cache_error_naming_the_path(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an SQLite database\n" * 256)
    with pytest.raises(SessionCacheError) as raised:
        SessionCache(db_path, 10, default_ttl=DEFAULT_TTL, max_value_bytes=MAX_VALUE_BYTES)
    assert str(db_path) in str(raised.value)


def test_path_below_a_regular_file_raises_session_cache_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("not a directory")
    path = tmp_path / "plain-file" / "session.db"
    with pytest.raises(SessionCacheError) as raised:
        SessionCache(path, 10, default_ttl=DEFAULT_TTL, max_value_bytes=MAX_VALUE_BYTES)
    assert str(path) in str(raised.value)


REFUSE_EVERY_WRITE = """
CREATE TRIGGER refuse_insert BEFORE INSERT ON session_cache BEGIN SELECT RAISE(ABORT, 'disk full'); END;
CREATE TRIGGER refuse_update BEFORE UPDATE ON session_cache BEGIN SELECT RAISE(ABORT, 'disk full'); END;
CREATE TRIGGER refuse_delete BEFORE DELETE ON session_cache BEGIN SELECT RAISE(ABORT, 'disk full'); END;
"""

FAILING_WRITES: dict[str, Callable[[SessionCache], object]] = {
    "set-new": lambda cache: cache.set("new", 1),
    "set-existing": lambda cache: cache.set("seed:a", 1),
    "set_many": lambda cache: cache.set_many({"new": 1, "seed:a": 2}),
    "incr-new": lambda cache: cache.incr("new"),
    "incr-existing": lambda cache: cache.incr("seed:n"),
    "touch": lambda cache: cache.touch("seed:a", 500),
    "delete": lambda cache: cache.delete("seed:a"),
    "clear_pattern": lambda cache: cache.clear_pattern("seed:"),
    "clear": lambda cache: cache.clear(),
}


@pytest.fixture
def refusing_cache(make_cache: CacheMaker, db_path: Path) -> SessionCache:
    """A cache whose database accepts no more writes (as a full or failing disk would)."""
    cache = make_cache()
    cache.set_many({"seed:a": "a", "seed:n": 1}, 50)
    execute_script(db_path, REFUSE_EVERY_WRITE)
    return cache


@pytest.mark.parametrize("operation", list(FAILING_WRITES))
def test_failed_write_raises_session_cache_error_naming_the_path(
    refusing_cache: SessionCache, db_path: Path, operation: str
) -> None:
    with pytest.raises(SessionCacheError, match="disk full") as raised:
        FAILING_WRITES[operation](refusing_cache)
    assert str(db_path) in str(raised.value)


@pytest.mark.parametrize("operation", list(FAILING_WRITES))
def test_failed_write_changes_nothing(refusing_cache: SessionCache, operation: str) -> None:
    with pytest.raises(SessionCacheError):
        FAILING_WRITES[operation](refusing_cache)
    assert refusing_cache.get_many(["seed:a", "seed:n", "new"]) == {"seed:a": "a", "seed:n": 1}
    assert refusing_cache.ttl("seed:a") == pytest.approx(50)


def test_set_many_that_fails_midway_stores_nothing(make_cache: CacheMaker, db_path: Path) -> None:
    cache = make_cache()
    cache.set("a", "before")
    execute_script(
        db_path,
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON session_cache WHEN NEW.key = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    with pytest.raises(SessionCacheError, match="disk full"):
        cache.set_many({"a": "after", "b": 1, "poison": 2, "c": 3})
    assert cache.get_many(["a", "b", "poison", "c"]) == {"a": "before"}


def test_failed_write_is_logged_as_an_error(
    refusing_cache: SessionCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="api.core.session_cache")
    with pytest.raises(SessionCacheError):
        refusing_cache.set("new", 1)
    assert any(
        record.levelno >= logging.ERROR and "disk full" in record.getMessage() for record in caplog.records
    )


# -- one cache per process -------------------------------------------------------------------------


@pytest.fixture
def process_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the process settings at a fresh database; forget the process cache afterwards."""
    path = tmp_path / "process" / "session.db"
    monkeypatch.setenv("RET_SESSION_DB", str(path))
    monkeypatch.setenv("SESSION_CACHE_TTL_SECONDS", "77")
    get_settings.cache_clear()
    install_session_cache(None)
    yield path
    get_session_cache().close()
    install_session_cache(None)
    get_settings.cache_clear()


def run_in_forked_child(task: Callable[[], object]) -> Any:
    """Run ``task`` in a forked child and return what it returned (sent back as JSON over a pipe)."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process that has threads; forking is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        status = 1
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(json.dumps(task()).encode())
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child failed (traceback above)"
    return json.loads(report)


def test_get_session_cache_returns_one_instance_per_process(process_db: Path) -> None:
    assert get_session_cache() is get_session_cache()


def test_get_session_cache_builds_from_settings(process_db: Path) -> None:
    cache = get_session_cache()
    assert isinstance(cache, SessionCache)
    assert cache.path == process_db
    cache.set("k", 1)
    assert cache.ttl("k") == pytest.approx(77, abs=5)


def test_get_session_cache_builds_one_instance_for_concurrent_threads(process_db: Path) -> None:
    start = threading.Barrier(8)
    seen: list[object] = []

    def fetch() -> None:
        start.wait()
        seen.append(get_session_cache())

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(cache) for cache in seen}) == 1


def test_get_session_cache_returns_the_installed_cache(process_db: Path, make_cache: CacheMaker) -> None:
    installed = make_cache()
    install_session_cache(installed)
    assert get_session_cache() is installed


def test_forked_child_builds_its_own_session_cache(process_db: Path) -> None:
    parent_cache = get_session_cache()
    parent_cache.set("from-parent", "hello")
    parent_cache.get("from-parent")

    def child() -> dict[str, object]:
        cache = get_session_cache()
        cache.set("from-child", "hi")
        return {
            "new": cache is not parent_cache,
            "stable": cache is get_session_cache(),
            "path": str(getattr(cache, "path", "")),
            "read": cache.get("from-parent"),
        }

    report = run_in_forked_child(child)
    assert report == {"new": True, "stable": True, "path": str(process_db), "read": "hello"}
    assert get_session_cache() is parent_cache
    assert parent_cache.get("from-child") == "hi"


def test_cache_built_before_fork_keeps_working_in_parent_and_child(
    make_cache: CacheMaker, db_path: Path
) -> None:
    cache = make_cache()
    cache.set("before", 1)
    cache.get("before")

    def child() -> object:
        cache.set("in-child", 2)
        return cache.get_many(["before", "in-child"])

    assert run_in_forked_child(child) == {"before": 1, "in-child": 2}
    cache.set("after", 3)
    assert cache.get_many(["before", "in-child", "after"]) == {"before": 1, "in-child": 2, "after": 3}
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


# -- convenience functions -------------------------------------------------------------------------


@pytest.fixture
def installed(make_cache: CacheMaker) -> Iterator[SessionCache]:
    cache = make_cache()
    install_session_cache(cache)
    yield cache
    install_session_cache(None)


def test_set_cache_writes_to_the_installed_cache(installed: SessionCache) -> None:
    set_cache("k", {"a": 1}, 10)
    assert installed.get("k") == {"a": 1}
    assert installed.ttl("k") == pytest.approx(10)


def test_get_cache_reads_from_the_installed_cache(installed: SessionCache) -> None:
    installed.set("k", [1])
    assert get_cache("k") == [1]
    assert get_cache("missing", "default") == "default"


def test_delete_cache_deletes_from_the_installed_cache(installed: SessionCache) -> None:
    installed.set("k", 1)
    assert delete_cache("k") is True
    assert delete_cache("k") is False
    assert not installed.exists("k")


def test_clear_cache_pattern_clears_the_installed_cache(installed: SessionCache) -> None:
    installed.set_many({"user:1:a": 1, "user:1:b": 2, "user:10:a": 3})
    assert clear_cache_pattern("user:1:") == 2
    assert installed.keys() == ["user:10:a"]


# -- construction from settings --------------------------------------------------------------------


def test_from_settings_uses_the_configured_values(tmp_path: Path, clock: FakeClock) -> None:
    settings = make_settings(tmp_path, session_cache_max_size=2, session_cache_ttl_seconds=30)
    cache = SessionCache.from_settings(settings, clock=clock)
    try:
        assert (cache.path, cache.max_size) == (settings.ret_session_db, 2)
        cache.set("k", 1)
        assert cache.ttl("k") == pytest.approx(30)
    finally:
        cache.close()


def test_default_value_limit_is_one_mebibyte(tmp_path: Path) -> None:
    cache = SessionCache.from_settings(make_settings(tmp_path))
    try:
        cache.set("k", b"x" * 1024 * 1024)
        with pytest.raises(ValueError, match="limit"):
            cache.set("k", b"x" * (1024 * 1024 + 1))
        assert cache.get("k") == b"x" * 1024 * 1024
    finally:
        cache.close()
