"""One writer at a time, handed over at once: the gate in front of the queue's SQLite writes.

SQLite admits one writer per database. A writer that finds the lock taken sleeps in SQLite's busy
handler, 1, 2, 5, 10 ms and longer, while the lock itself is held for a fraction of a millisecond,
so with two worker processes and two threads each most of a busy queue's time went to sleeping:
about 350 jobs/s instead of 1,000+ on the 2-core CI machine (measured 2026-11-26, issue 6). The
queue's writers therefore queue up in front of SQLite: a lock per process for its threads, then an
``flock`` on a file beside the database for the processes, polled every 0.2 ms. A process killed
while holding the file lock loses it at once (the kernel drops it); one stopped while holding it
(SIGSTOP) is waited for at most ``MAX_WAIT_SECONDS``, then writers go on to SQLite's own waiting.
PostgreSQL needs none of this: its writers lock rows, not the database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.0002
MAX_WAIT_SECONDS: Final = 30.0
SUFFIX: Final = ".queue-lock"

_process_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def lock_file_path(database_path: str) -> Path:
    """The file whose ``flock`` the queue's writers take (beside the database file)."""
    return Path(database_path + SUFFIX)


@contextmanager
def write_gate(database_path: str) -> Iterator[None]:
    """Hold the writer gate of the SQLite database at ``database_path`` for the block."""
    with _registry_lock:
        process_lock = _process_locks.setdefault(database_path, threading.Lock())
    with process_lock:
        # Opened per use (a few microseconds): closing it is what releases the lock.
        descriptor = os.open(lock_file_path(database_path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _take(descriptor, database_path)
            yield
        finally:
            os.close(descriptor)


def _take(descriptor: int, database_path: str) -> None:
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                logger.warning(
                    "%s%s held for %.0f s; writing without it", database_path, SUFFIX, MAX_WAIT_SECONDS
                )
                return
            time.sleep(POLL_SECONDS)


def _after_fork_in_child() -> None:
    # A thread lock some other parent thread held at the fork would stay locked in the child.
    global _registry_lock
    _process_locks.clear()
    _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
