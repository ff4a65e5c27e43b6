"""The shared SQLite plumbing: per-thread connections, and the value an UPDATE wrote."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from api.core.sqlite import BUSY_RETRY_MAX_DELAY_SECONDS, ThreadConnections, WrittenValue, while_busy


def test_each_thread_reads_the_value_its_own_update_wrote(tmp_path: Path) -> None:
    written = WrittenValue("written")
    connections = ThreadConnections(tmp_path / "db.sqlite", setup=written.register)
    connections.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    seen: dict[str, list[int]] = {}
    start = threading.Barrier(4, timeout=30)

    def count(name: str) -> None:
        connections.execute("INSERT INTO counters VALUES (?, 0)", (name,))
        start.wait()
        values = []
        for _ in range(200):
            cursor = connections.execute(
                "UPDATE counters SET value = written(value + 1) WHERE name = ?", (name,)
            )
            assert cursor.rowcount == 1
            values.append(written.local.value)
        seen[name] = values

    threads = [threading.Thread(target=count, args=(f"counter-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connections.close()
    assert seen == {f"counter-{n}": list(range(1, 201)) for n in range(4)}


def test_connections_are_per_thread_and_closed_together(tmp_path: Path) -> None:
    connections = ThreadConnections(tmp_path / "db.sqlite")
    here = connections.get()
    there: list[object] = []
    thread = threading.Thread(target=lambda: there.append(connections.get()))
    thread.start()
    thread.join()
    assert connections.get() is here
    assert there[0] is not here
    connections.close()


class _Busy:
    """An operation that reports SQLITE_BUSY ``failures`` times, then returns ``"done"``."""

    def __init__(self, failures: int, error: sqlite3.OperationalError | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error or _busy_error()

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def _busy_error() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = sqlite3.SQLITE_BUSY
    return error


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_busy_operation_is_retried_with_short_growing_sleeps() -> None:
    clock = _Clock()
    operation = _Busy(failures=12)
    assert while_busy(2.0, operation, clock=clock, sleep=clock.sleep) == "done"
    assert operation.calls == 13
    assert clock.sleeps[0] < 0.0001  # tens of microseconds, not SQLite's 1 ms first sleep
    assert max(clock.sleeps) <= BUSY_RETRY_MAX_DELAY_SECONDS * 1.5  # capped (jitter at most +50%)


def test_busy_past_the_timeout_raises_the_error() -> None:
    clock = _Clock()
    operation = _Busy(failures=10**9)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        while_busy(0.5, operation, clock=clock, sleep=clock.sleep)
    assert 0.5 <= clock.now < 0.5 + 2 * BUSY_RETRY_MAX_DELAY_SECONDS


def test_other_errors_are_not_retried() -> None:
    operation = _Busy(failures=1, error=sqlite3.OperationalError("no such table: x"))
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        while_busy(2.0, operation, sleep=lambda seconds: None)
    assert operation.calls == 1


def test_thread_connections_leave_waiting_to_while_busy(tmp_path: Path) -> None:
    connections = ThreadConnections(tmp_path / "db.sqlite", busy_timeout=0.2)
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    try:
        assert connections.get().execute("PRAGMA busy_timeout").fetchone() == (0,)
        connections.execute("CREATE TABLE t (x INTEGER)")
        other.execute("BEGIN IMMEDIATE")  # holds the write lock past the pool's busy timeout
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            connections.execute("INSERT INTO t VALUES (1)")
        other.execute("COMMIT")
        connections.execute("INSERT INTO t VALUES (1)")
        assert connections.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        other.close()
        connections.close()
