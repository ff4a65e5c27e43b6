"""SQLite connections for the embedded stores: pragmas, per-thread connections, fork safety.

Every store that lives in an SQLite file (the session cache, the rate limiter) opens its connections
here so they share one set of pragmas and one rule: a connection is used only by the thread and the
process that opened it, and never across ``fork()``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Synchronous = Literal["NORMAL", "FULL"]
# Writers wait for each other this long before "database is locked" can surface; with BEGIN
# IMMEDIATE for every read-then-write, waiting is the only way contention shows.
BUSY_TIMEOUT_SECONDS = 30.0
WAL_SWITCH_RETRY_SECONDS = 0.005
STATEMENT_CACHE_SIZE = 256
# Checkpoints run beside the writers, not inside them (see WalCheckpointer).
CHECKPOINT_POLL_SECONDS = 0.1
# After a checkpoint empties the WAL, SQLite truncates the file to this size (bounds disk use after a burst).
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


class SQLiteStoreError(RuntimeError):
    """An SQLite file cannot be opened or used; the message names the path."""


def open_connection(path: Path, synchronous: Synchronous = "NORMAL") -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with WAL and the given durability.

    Raises:
        SQLiteStoreError: the file cannot be opened, is not a database, or refuses WAL mode.
    """
    try:
        connection = sqlite3.connect(
            str(path),
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,  # only ``close()`` crosses threads
            cached_statements=STATEMENT_CACHE_SIZE,
        )
    except sqlite3.Error as exc:
        raise SQLiteStoreError(f"cannot open SQLite database {path}: {exc}") from exc
    try:
        mode = _switch_to_wal(connection)
        if mode.lower() != "wal":
            raise SQLiteStoreError(f"{path}: WAL mode refused (journal_mode={mode}); use a local disk")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA temp_store=MEMORY")
    except sqlite3.Error as exc:
        connection.close()
        raise SQLiteStoreError(f"cannot use SQLite database {path}: {exc}") from exc
    return connection


def _switch_to_wal(connection: sqlite3.Connection) -> str:
    # Several processes opening a new file at once (`uvicorn --workers 4` on a first start) race to
    # switch it to WAL, and SQLite answers the losers SQLITE_BUSY at once, without waiting in the
    # busy handler (found by test_processes_opening_a_new_database_at_once_all_succeed): retry
    # for as long as any other lock wait.
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            return str(connection.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_SWITCH_RETRY_SECONDS)


def _is_busy(exc: Exception) -> bool:
    code: int = getattr(exc, "sqlite_errorcode", 0)  # absent on errors raised by Python code
    return isinstance(exc, sqlite3.OperationalError) and code & 0xFF == sqlite3.SQLITE_BUSY


@contextmanager
def immediate_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: take the write lock up front so read-then-write is atomic
    across processes and never fails with a lock upgrade; roll back on any error."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class ThreadConnections:
    """One connection per thread to one database file, reopened after ``fork()``.

    ``setup`` runs once per new connection (e.g. to register functions).
    """

    def __init__(
        self,
        path: Path,
        synchronous: Synchronous = "NORMAL",
        setup: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        self._setup = setup
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._closed = False
        self._checkpointing = False
        _LIVE_POOLS.add(self)

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._open()
        return connection

    def _open(self) -> sqlite3.Connection:
        if self._closed:
            raise SQLiteStoreError(f"{self.path}: store is closed")
        connection = open_connection(self.path, self.synchronous)
        try:
            # This process's checkpointer thread does the checkpoints; no commit pays for one.
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
            if self._setup is not None:
                self._setup(connection)
        except BaseException:
            connection.close()
            raise
        with self._lock:
            self._opened.append(connection)
            if not self._checkpointing:
                _CHECKPOINTERS.acquire(self.path, self.synchronous)
                self._checkpointing = True
        self._local.connection = connection
        return connection

    def close(self) -> None:
        """Close every connection this process opened (idempotent)."""
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
            checkpointing, self._checkpointing = self._checkpointing, False
        for connection in opened:
            connection.close()
        if checkpointing:
            _CHECKPOINTERS.release(self.path)
        self._local = threading.local()

    def _forget_after_fork(self) -> None:
        # The parent's connections (and their locks) belong to the parent: abandon them, never
        # close or reuse them in the child. Its checkpointer thread did not survive the fork.
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened = []
        self._checkpointing = False


class WalCheckpointer:
    """Checkpoints one database's WAL from a background thread of this process.

    With SQLite's automatic checkpoints, the commit that fills the WAL (1,000 pages) copies it into
    the database and fsyncs both files: one write in a thousand pays for all of them, which on a
    large database is most of the mean cost of a write. Here the connections turn that off and this
    thread runs a PASSIVE checkpoint (it never blocks writers or readers) whenever the WAL file
    changed since the last look. Each process using the file runs one; when two try at once, one
    finds the other checkpointing and lets it. A failure is logged and tried again on the next
    change. SQLite's own checkpoint when the last connection closes still happens.
    """

    def __init__(
        self, path: Path, synchronous: Synchronous = "NORMAL", poll_seconds: float = CHECKPOINT_POLL_SECONDS
    ) -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        self.poll_seconds = poll_seconds
        self._wal = path.with_name(path.name + "-wal")
        self._seen: tuple[int, int] | None = None
        self._connection: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {self.path.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_seconds):
                self.checkpoint_if_changed()
        finally:
            if self._connection is not None:
                self._connection.close()

    def checkpoint_if_changed(self) -> bool:
        """Checkpoint if the WAL changed since the last call; True if a checkpoint ran."""
        try:
            stat = self._wal.stat()
        except FileNotFoundError:
            return False
        seen = (stat.st_size, stat.st_mtime_ns)
        if seen == self._seen:
            return False
        try:
            if self._connection is None:
                self._connection = open_connection(self.path, self.synchronous)
            busy = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
        except (sqlite3.Error, SQLiteStoreError) as exc:
            if not _is_busy(exc):
                logger.error("checkpoint of %s failed (tried again on the next change): %s", self.path, exc)
            return False
        if busy:
            return False  # another connection is checkpointing this WAL right now: look again later
        self._seen = seen
        return True


class _CheckpointerRegistry:
    """One running WalCheckpointer per database file per process, shared by its ThreadConnections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Path, tuple[WalCheckpointer, int]] = {}

    def acquire(self, path: Path, synchronous: Synchronous) -> None:
        key = path.resolve()
        with self._lock:
            checkpointer, users = self._running.get(key) or (
                WalCheckpointer(path, synchronous, CHECKPOINT_POLL_SECONDS),
                0,
            )
            if users == 0:
                checkpointer.start()
            self._running[key] = (checkpointer, users + 1)

    def release(self, path: Path) -> None:
        key = path.resolve()
        with self._lock:
            checkpointer, users = self._running[key]
            if users > 1:
                self._running[key] = (checkpointer, users - 1)
                return
            del self._running[key]
        checkpointer.stop()

    def running(self, path: Path) -> WalCheckpointer | None:
        with self._lock:
            found = self._running.get(path.resolve())
        return None if found is None else found[0]

    def forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._running = {}


_CHECKPOINTERS = _CheckpointerRegistry()


_LIVE_POOLS: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _CHECKPOINTERS.forget_after_fork()
    for pool in list(_LIVE_POOLS):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
