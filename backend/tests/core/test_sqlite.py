"""api.core.sqlite: connections leave checkpoints to one background checkpointer per file and process."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from api.core import sqlite as sqlite_module
from api.core.sqlite import ThreadConnections, WalCheckpointer

ROW_BYTES = 1000
ROWS = 2000  # ~2 MB: far more than the pages a fresh file holds before its first checkpoint


def fill(connections: ThreadConnections) -> None:
    connection = connections.get()
    connection.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    for key in range(ROWS):
        connection.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (key, b"x" * ROW_BYTES))


def database_bytes(path: Path) -> int:
    return path.stat().st_size


def test_connections_never_checkpoint_on_commit(tmp_path: Path) -> None:
    connections = ThreadConnections(tmp_path / "db.sqlite")
    try:
        assert connections.get().execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    finally:
        connections.close()


@pytest.fixture
def idle_background(monkeypatch: pytest.MonkeyPatch) -> None:
    """Background checkpointers that wait an hour between looks: the test checkpoints by hand."""
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_POLL_SECONDS", 3600.0)


@pytest.mark.usefixtures("idle_background")
def test_checkpoint_if_changed_copies_the_wal_into_the_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    checkpointer = WalCheckpointer(path)
    connections = ThreadConnections(path)
    assert sqlite_module._CHECKPOINTERS.running(path) is None  # started with the first connection
    try:
        fill(connections)
        assert database_bytes(path) < ROWS * ROW_BYTES // 2  # the rows are in the WAL, not the file
        assert checkpointer.checkpoint_if_changed() is True
        assert database_bytes(path) >= ROWS * ROW_BYTES
        assert checkpointer.checkpoint_if_changed() is False  # nothing new since
    finally:
        connections.close()


def test_the_background_thread_checkpoints_after_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_POLL_SECONDS", 0.01)
    path = tmp_path / "db.sqlite"
    connections = ThreadConnections(path)
    try:
        fill(connections)
        deadline = time.monotonic() + 10
        while database_bytes(path) < ROWS * ROW_BYTES:
            assert time.monotonic() < deadline, "the checkpointer thread never copied the WAL"
            time.sleep(0.01)
    finally:
        connections.close()


@pytest.mark.usefixtures("idle_background")
def test_one_checkpointer_per_file_shared_and_stopped_with_its_last_user(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    first, second = ThreadConnections(path), ThreadConnections(path)
    first.get()
    second.get()
    running = sqlite_module._CHECKPOINTERS.running(path)
    assert running is not None
    first.close()
    assert sqlite_module._CHECKPOINTERS.running(path) is running
    second.close()
    assert sqlite_module._CHECKPOINTERS.running(path) is None
    assert running._thread is not None
    assert not running._thread.is_alive()


@pytest.mark.usefixtures("idle_background")
def test_a_failed_checkpoint_is_logged_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "db.sqlite"
    connections = ThreadConnections(path)
    checkpointer = WalCheckpointer(path)
    real_open = sqlite_module.open_connection

    def refuse(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    try:
        fill(connections)
        monkeypatch.setattr(sqlite_module, "open_connection", refuse)
        with caplog.at_level(logging.ERROR, logger="api.core.sqlite"):
            assert checkpointer.checkpoint_if_changed() is False
        assert any("disk I/O error" in record.getMessage() for record in caplog.records)
        assert all(record.levelno == logging.ERROR for record in caplog.records)
        monkeypatch.setattr(sqlite_module, "open_connection", real_open)
        assert checkpointer.checkpoint_if_changed() is True  # the same change, tried again
    finally:
        connections.close()
