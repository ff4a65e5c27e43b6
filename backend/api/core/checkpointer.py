"""WAL checkpoints of the session store, done by a background thread instead of by the writers.

In WAL mode every commit appends pages to the ``-wal`` file; a *checkpoint* copies them back into
the database and syncs it. SQLite runs one inside whichever commit takes the WAL past
``wal_autocheckpoint`` pages (1,000 by default), so that caller pays for copying every page the last
few hundred writes touched, and an fsync. With a million keys those pages are scattered: a set cost
30 µs instead of 17 µs at 10,000 keys, nearly all of the difference in checkpoint reads and writes.

Here the writers' connections keep autocheckpoints only as a safety net (``SAFETY_PAGES``), and a
thread per store and process runs ``PRAGMA wal_checkpoint(PASSIVE)`` after every
``writes_per_checkpoint`` writes it is told about (``wrote()``): a passive checkpoint never blocks a
writer or a reader, and SQLite runs it without Python's GIL, so the copying happens beside the
callers. Durability is unchanged: a commit is in the WAL before it returns either way. An idle
process's thread sleeps on an event (no polling). ``fork()`` waits for a checkpoint in progress
(a child must not inherit SQLite's internal locks held by a thread it does not have); the child
starts its own thread on its first write.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Final

from api.core.sqlite_errors import is_busy

logger = logging.getLogger(__name__)

# About 1,000 WAL pages (SQLite's own default threshold) at 2-3 pages per small write.
WRITES_PER_CHECKPOINT: Final = 400
# Past this many WAL pages the thread also finishes the copy under the write lock (see _checkpoint).
RESTART_PAGES: Final = 4_000
# Writers still checkpoint themselves past this many WAL pages (40 MB): only if this thread lags.
SAFETY_PAGES: Final = 10_000


class Checkpointer:
    """Passive checkpoints of the database at ``path``, in a background thread of this process."""

    def __init__(
        self,
        path: Path,
        writes_per_checkpoint: int = WRITES_PER_CHECKPOINT,
        restart_pages: int = RESTART_PAGES,
    ) -> None:
        if writes_per_checkpoint < 1 or restart_pages < 1:
            raise ValueError("writes_per_checkpoint and restart_pages must be >= 1")
        self.path = path
        self.writes_per_checkpoint = writes_per_checkpoint
        self.restart_pages = restart_pages
        self.checkpoints = 0  # completed checkpoint attempts, for tests and stats
        self._start()
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _start(self) -> None:
        # Held while this thread is inside SQLite: fork() waits for it (see _before_fork), so a
        # child never inherits one of SQLite's internal mutexes locked by a thread it lacks.
        self._in_sqlite = threading.Lock()
        self._pending = 0  # writes since the last wake-up (a heuristic: a lost += race is harmless)
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def wrote(self, count: int = 1) -> None:
        """Count ``count`` committed writes (rows changed); every ``writes_per_checkpoint`` wakes
        the thread."""
        if count <= 0:
            return
        self._pending += count
        if self._pending >= self.writes_per_checkpoint:
            self._pending = 0
            self.request()

    def request(self) -> None:
        """Ask for a checkpoint now (starting the thread on first use)."""
        if self._thread is None:
            with self._thread_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._run, name=f"checkpoint {self.path.name}", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def wait_for(self, checkpoints: int, timeout: float) -> bool:
        """Wait until ``checkpoints`` attempts have completed (tests); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self.checkpoints >= checkpoints, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (after the checkpoint it may be running) and close its connection."""
        with self._thread_lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                with self._in_sqlite:
                    connection = connection or self._connect()
                    if connection is not None:
                        self._checkpoint(connection)
                with self._done:
                    self.checkpoints += 1
                    self._done.notify_all()
        finally:
            if connection is not None:
                with self._in_sqlite:
                    connection.close()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            # No pragmas needed: this connection only checkpoints (the file is in WAL mode already).
            # No busy handler: a RESTART that would have to wait (for the write lock, or for
            # readers still on the WAL) gives up at once instead of holding writers back.
            return sqlite3.connect(str(self.path), timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            logger.warning(
                "checkpoint thread cannot open %s: %s (writers checkpoint instead)", self.path, exc
            )
            return None

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            _, wal_pages, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if wal_pages >= self.restart_pages:
                # Writers that never pause leave the frames appended during each passive checkpoint,
                # so the WAL is never all copied and never starts over. Copy that small tail holding
                # the write lock (writers wait only for the copy), then the next write restarts the
                # WAL; if the lock or a reader is busy, SQLite gives up at once (no busy handler).
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as exc:
            # Busy means another connection is checkpointing: its work is as good as ours.
            if not is_busy(exc):
                logger.warning("checkpoint of %s failed: %s", self.path, exc)

    def _forget_after_fork(self) -> None:
        # The parent's thread does not exist here, and its locks may be held: start afresh (a
        # checkpointer closed in the parent stays closed).
        stopping = self._stopping
        self._start()
        self._stopping = stopping


_LIVE: weakref.WeakSet[Checkpointer] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()  # for _LIVE: a WeakSet cannot be copied while another thread adds
# Taken first by _before_fork and released last after it: two threads forking at once take turns,
# so neither releases the other's locks (or none).
_FORK_LOCK = threading.Lock()
_FORKING: list[Checkpointer] = []  # whose locks _before_fork took


def _before_fork() -> None:
    # Wait for any checkpoint in progress (milliseconds) and keep new ones out until fork returns.
    _FORK_LOCK.acquire()
    with _LIVE_LOCK:
        _FORKING[:] = list(_LIVE)
    for checkpointer in _FORKING:
        checkpointer._in_sqlite.acquire()


def _after_fork_in_parent() -> None:
    for checkpointer in _FORKING:
        checkpointer._in_sqlite.release()
    _FORKING.clear()
    _FORK_LOCK.release()


def _after_fork_in_child() -> None:
    global _FORK_LOCK, _LIVE_LOCK
    _FORK_LOCK, _LIVE_LOCK = threading.Lock(), threading.Lock()
    _FORKING.clear()
    for checkpointer in list(_LIVE):
        checkpointer._forget_after_fork()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
