"""SQLite connections for the embedded stores: pragmas, per-thread connections, fork safety, and
waiting for the write lock.

Every store that lives in an SQLite file (the session cache, the rate limiter) opens its connections
here so they share one set of pragmas and one rule: a connection is used only by the thread and the
process that opened it, and never across ``fork()``.

Waiting is done here, not by SQLite's busy handler. That handler (``sqlite3_busy_timeout``, the only
one Python's ``sqlite3`` can install) sleeps 1, 2, 5, 10 … and then 100 ms between tries; with several
processes writing, a waiter wakes to find the lock taken again and starves: four processes sharing
the rate limiter saw single hits wait 0.3-2 s, and some failed at the 2 s budget. ``ThreadConnections``
turns SQLite's handler off and retries a busy statement after 20 µs, doubling up to 1 ms with jitter
(worst hit in the same runs: 13-37 ms, no failures).
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from api.core.checkpointer import SAFETY_PAGES, Checkpointer
from api.core.sqlite_errors import is_busy

logger = logging.getLogger(__name__)

Synchronous = Literal["NORMAL", "FULL"]
# Writers wait for each other this long before "database is locked" can surface; with BEGIN
# IMMEDIATE for every read-then-write, waiting is the only way contention shows.
BUSY_TIMEOUT_SECONDS = 30.0
WAL_SWITCH_RETRY_SECONDS = 0.005
STATEMENT_CACHE_SIZE = 256
BUSY_RETRY_FIRST_DELAY_SECONDS: Final = 20e-6
BUSY_RETRY_MAX_DELAY_SECONDS: Final = 1e-3

T = TypeVar("T")


class SQLiteStoreError(RuntimeError):
    """An SQLite file cannot be opened or used; the message names the path."""


def open_connection(
    path: Path, synchronous: Synchronous = "NORMAL", busy_timeout: float = BUSY_TIMEOUT_SECONDS
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with WAL and the given durability. ``busy_timeout`` is for
    SQLite's own busy handler (0 turns it off: the caller retries with ``while_busy``).

    Raises:
        SQLiteStoreError: the file cannot be opened, is not a database, or refuses WAL mode.
    """
    try:
        connection = sqlite3.connect(
            str(path),
            timeout=busy_timeout,
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
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_SWITCH_RETRY_SECONDS)


def while_busy(
    timeout: float,
    operation: Callable[..., T],
    *args: Any,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``operation(*args)``, tried again while it fails with SQLITE_BUSY, for up to ``timeout``
    seconds (then the last error is raised). Retrying is safe for what fails busy here: an
    autocommit statement or a ``BEGIN``, which SQLite refuses before changing anything.
    """
    try:
        return operation(*args)
    except sqlite3.OperationalError as error:
        if not is_busy(error):
            raise
    return retry_while_busy(timeout, operation, *args, clock=clock, sleep=sleep)


def retry_while_busy(
    timeout: float,
    operation: Callable[..., T],
    *args: Any,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``while_busy`` after a first attempt that the caller made itself and that failed busy (hot
    paths try once inline, without the extra call): waits, then tries again as ``while_busy``."""
    deadline = clock() + timeout
    delay = BUSY_RETRY_FIRST_DELAY_SECONDS
    while True:
        # Jitter: waiters that slept alike would otherwise wake together and collide again.
        sleep(delay * (0.5 + random.random()))
        try:
            return operation(*args)
        except sqlite3.OperationalError as error:
            if not is_busy(error) or clock() >= deadline:
                raise
        delay = min(delay * 2, BUSY_RETRY_MAX_DELAY_SECONDS)


@contextmanager
def immediate_transaction(
    connection: sqlite3.Connection, timeout: float = BUSY_TIMEOUT_SECONDS
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: take the write lock up front (waiting up to ``timeout``
    seconds for it) so read-then-write is atomic across processes and never fails with a lock
    upgrade; roll back on any error."""
    while_busy(timeout, connection.execute, "BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class WrittenValue:
    """A connection function ``name(x)`` that returns ``x`` and remembers it for the calling thread.

    An UPDATE of at most one row that sets ``column = name(expression)`` tells its caller the value
    it wrote, without RETURNING: for RETURNING, SQLite first buffers the rows in a temporary table,
    which costs about a quarter of a one-row write (measured on the rate limiter's hit, 12.5 µs
    plain vs 15.6 µs). Read ``local.value`` only after such an UPDATE reported one changed row
    (an attribute, not a property: it is read on every rate-limit decision).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.local = threading.local()  # connections are per thread: so is the value

    def register(self, connection: sqlite3.Connection) -> None:
        local = self.local

        def record(value: Any) -> Any:
            local.value = value
            return value

        connection.create_function(self.name, 1, record)


def _no_checkpoints(count: int = 1) -> None:
    """``ThreadConnections.wrote`` without a checkpointer: SQLite checkpoints on its own."""


class ThreadConnections:
    """One connection per thread to one database file, reopened after ``fork()``.

    ``setup`` runs once per new connection (e.g. to register functions). SQLite's busy handler is
    off on these connections: run statements through ``execute`` or ``transaction``, which wait up
    to ``busy_timeout`` seconds for a lock (see the module docstring). With ``checkpoints`` WAL
    checkpoints are left to a background thread (``api.core.checkpointer``); tell it about each
    committed write with ``wrote()``.
    """

    def __init__(
        self,
        path: Path,
        synchronous: Synchronous = "NORMAL",
        setup: Callable[[sqlite3.Connection], None] | None = None,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        *,
        checkpoints: bool = False,
    ) -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.checkpointer = Checkpointer(path) if checkpoints else None
        # wrote(count=1): ``count`` writes were committed (counts towards the next background
        # checkpoint). Bound once, not a method that forwards: it runs on every write.
        self.wrote: Callable[..., None] = self.checkpointer.wrote if self.checkpointer else _no_checkpoints
        self._setup = setup
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._closed = False
        _LIVE_POOLS.add(self)

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._open()
        return connection

    def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run one statement on this thread's connection, waiting out a busy database."""
        return while_busy(self.busy_timeout, self.get().execute, sql, parameters)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """``immediate_transaction`` on this thread's connection, with this pool's busy timeout."""
        return immediate_transaction(self.get(), self.busy_timeout)

    def _open(self) -> sqlite3.Connection:
        if self._closed:
            raise SQLiteStoreError(f"{self.path}: store is closed")
        connection = open_connection(self.path, self.synchronous, busy_timeout=0)
        if self.checkpointer is not None:
            connection.execute(f"PRAGMA wal_autocheckpoint={SAFETY_PAGES}")
        if self._setup is not None:
            self._setup(connection)
        with self._lock:
            self._opened.append(connection)
        self._local.connection = connection
        return connection

    def close(self) -> None:
        """Close every connection this process opened (idempotent)."""
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
        if self.checkpointer is not None:
            self.checkpointer.close()
        for connection in opened:
            connection.close()
        self._local = threading.local()

    def _forget_after_fork(self) -> None:
        # The parent's connections (and their locks) belong to the parent: abandon them, never
        # close or reuse them in the child.
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened = []


_LIVE_POOLS: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_LIVE_POOLS):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
