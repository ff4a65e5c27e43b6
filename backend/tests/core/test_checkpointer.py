"""Background WAL checkpoints: when they run, what they leave in the WAL, closing, and after fork()."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from api.core import checkpointer as checkpointer_module
from api.core.checkpointer import SAFETY_PAGES, Checkpointer
from api.core.rate_limit_policy import parse_policy
from api.core.rate_limit_store import SQLiteRateLimitStore
from api.core.session_cache import SessionCache
from api.core.sqlite import ThreadConnections, open_connection

WAIT = 10.0  # seconds: generous, only ever reached when something is broken


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    connection = open_connection(path)
    connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    connection.close()
    return path


def _writer(path: Path) -> sqlite3.Connection:
    connection = open_connection(path)
    connection.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies pages
    return connection


def _write(connection: sqlite3.Connection, first: int, count: int) -> None:
    for key in range(first, first + count):
        connection.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (key, "x" * 500))


def test_fewer_writes_than_the_threshold_start_nothing(database: Path) -> None:
    checkpointer = Checkpointer(database, writes_per_checkpoint=5)
    checkpointer.wrote(4)
    assert checkpointer._thread is None
    checkpointer.close()


def test_the_threshold_of_writes_wakes_the_thread_and_it_copies_the_wal(database: Path) -> None:
    writer = _writer(database)
    checkpointer = Checkpointer(database, writes_per_checkpoint=10)
    try:
        _write(writer, 0, 10)
        for _ in range(10):
            checkpointer.wrote()
        assert checkpointer.wait_for(1, WAIT)
        probe = sqlite3.connect(str(database), isolation_level=None)
        # Everything was copied back already: a passive checkpoint finds nothing left to copy.
        _, frames, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
        assert frames == copied
        assert frames > 0
    finally:
        checkpointer.close()
        writer.close()


@pytest.mark.parametrize(("pages_written", "restarted"), [(100, True), (2, False)])
def test_a_long_wal_is_finished_under_the_write_lock_so_it_starts_over(
    database: Path, pages_written: int, restarted: bool
) -> None:
    # Writers that never pause leave frames behind every passive checkpoint; past restart_pages
    # the thread copies the rest with a RESTART checkpoint (the next write starts a fresh WAL).
    writer = _writer(database)
    checkpointer = Checkpointer(database, writes_per_checkpoint=1, restart_pages=20)
    connection = sqlite3.connect(str(database), isolation_level=None)
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        _write(writer, 0, pages_written)
        checkpointer._checkpoint(connection)
        assert ("PRAGMA wal_checkpoint(RESTART)" in statements) is restarted
        assert statements[0] == "PRAGMA wal_checkpoint(PASSIVE)"
    finally:
        connection.close()
        checkpointer.close()
        writer.close()


def test_close_stops_the_thread(database: Path) -> None:
    checkpointer = Checkpointer(database, writes_per_checkpoint=1)
    checkpointer.wrote()
    assert checkpointer.wait_for(1, WAIT)
    thread = checkpointer._thread
    checkpointer.close()
    assert thread is not None
    assert not thread.is_alive()
    checkpointer.request()  # after close: no new thread
    assert checkpointer._thread is thread


def test_the_store_connections_keep_checkpoints_only_as_a_safety_net(database: Path) -> None:
    with_thread = ThreadConnections(database, checkpoints=True)
    without = ThreadConnections(database)
    try:
        assert with_thread.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_PAGES
        assert without.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # SQLite's default
        assert without.checkpointer is None
    finally:
        with_thread.close()
        without.close()


def test_session_cache_writes_drive_the_checkpoints(tmp_path: Path) -> None:
    cache = SessionCache(tmp_path / "cache.db", 10, default_ttl=60)
    try:
        checkpointer = cache._connections.checkpointer
        assert checkpointer is not None
        for index in range(checkpointer.writes_per_checkpoint):
            cache.set(f"key:{index}", index)
        assert checkpointer.wait_for(1, WAIT)
    finally:
        cache.close()


def test_admitted_rate_limit_hits_drive_the_checkpoints(tmp_path: Path) -> None:
    store = SQLiteRateLimitStore(tmp_path / "limits.db")
    try:
        checkpointer = store._connections.checkpointer
        assert checkpointer is not None
        policy = parse_policy("1000000/minute")
        for index in range(checkpointer.writes_per_checkpoint):
            assert store.hit(f"client:{index}", [policy], 1).admitted
        assert checkpointer.wait_for(1, WAIT)
    finally:
        store.close()


def test_a_forked_child_checkpoints_with_its_own_thread(database: Path) -> None:
    checkpointer = Checkpointer(database, writes_per_checkpoint=1)
    checkpointer.wrote()
    assert checkpointer.wait_for(1, WAIT)
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        code = 1
        try:
            before = checkpointer.checkpoints
            checkpointer.wrote()
            alive = checkpointer._thread is not None and checkpointer._thread.is_alive()
            code = 0 if checkpointer.wait_for(before + 1, WAIT) and alive else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert checkpointer._thread is not None
    assert checkpointer._thread.is_alive()  # the parent's thread is untouched
    checkpointer.close()


def test_writers_in_several_threads_are_never_blocked_by_a_passive_checkpoint(database: Path) -> None:
    checkpointer = Checkpointer(database, writes_per_checkpoint=20)
    errors: list[BaseException] = []

    def write(first: int) -> None:
        try:
            connection = _writer(database)
            for start in range(first, first + 400, 20):
                _write(connection, start, 20)
                checkpointer.wrote(20)
            connection.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n * 10_000,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    checkpointer.close()
    assert errors == []
    probe = sqlite3.connect(str(database))
    assert probe.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1200
    assert probe.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    probe.close()


def test_fork_waits_for_a_checkpoint_in_progress_and_the_child_starts_unlocked(database: Path) -> None:
    checkpointer = Checkpointer(database, writes_per_checkpoint=1)
    try:
        checkpointer_module._before_fork()  # what os.fork() runs first: takes every thread's lock
        assert checkpointer._in_sqlite.locked()
        checkpointer_module._after_fork_in_parent()
        assert not checkpointer._in_sqlite.locked()
        checkpointer._in_sqlite.acquire()  # as if fork() happened mid-checkpoint ...
        checkpointer_module._after_fork_in_child()  # ... the child gets a lock nobody holds
        assert not checkpointer._in_sqlite.locked()
        checkpointer.wrote()
        assert checkpointer.wait_for(1, WAIT)
    finally:
        checkpointer.close()


def test_two_threads_forking_at_once_leave_no_lock_held(database: Path) -> None:
    # Replays fork() hooks from two threads interleaved: the second waits for the first to finish.
    checkpointer = Checkpointer(database, writes_per_checkpoint=1)
    second_done = threading.Event()

    def second_fork() -> None:
        checkpointer_module._before_fork()
        checkpointer_module._after_fork_in_parent()
        second_done.set()

    try:
        checkpointer_module._before_fork()
        thread = threading.Thread(target=second_fork)
        thread.start()
        assert not second_done.is_set()  # it waits in _before_fork ...
        checkpointer_module._after_fork_in_parent()
        thread.join(WAIT)  # ... until the first fork is done
        assert second_done.is_set()
        assert not checkpointer._in_sqlite.locked()
        assert not checkpointer_module._FORK_LOCK.locked()
    finally:
        checkpointer.close()


def test_a_checkpointer_closed_before_fork_stays_closed_in_the_child(database: Path) -> None:
    checkpointer = Checkpointer(database, writes_per_checkpoint=1)
    checkpointer.close()
    checkpointer._forget_after_fork()  # what the child runs
    checkpointer.request()
    assert checkpointer._thread is None


def test_bulk_deletions_count_towards_the_next_checkpoint(tmp_path: Path) -> None:
    cache = SessionCache(tmp_path / "cache.db", 10, default_ttl=60)
    try:
        checkpointer = cache._connections.checkpointer
        assert checkpointer is not None
        below = checkpointer.writes_per_checkpoint - 1
        cache.set_many({f"group:{index}": index for index in range(below)})
        assert checkpointer.checkpoints == 0
        assert cache.clear_pattern("group:") == below  # deleting rows fills the WAL too
        assert checkpointer.wait_for(1, WAIT)
    finally:
        cache.close()


def test_purging_idle_buckets_counts_towards_the_next_checkpoint(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SQLiteRateLimitStore(tmp_path / "limits.db", clock=lambda: now[0])
    try:
        checkpointer = store._connections.checkpointer
        assert checkpointer is not None
        policy = parse_policy("10/second")
        below = checkpointer.writes_per_checkpoint - 1
        for index in range(below):
            store.hit(f"client:{index}", [policy], 1)
        assert checkpointer.checkpoints == 0
        now[0] += 3600
        assert store.purge_expired() == below
        assert checkpointer.wait_for(1, WAIT)
    finally:
        store.close()
