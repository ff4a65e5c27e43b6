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
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.0002
MAX_WAIT_SECONDS: Final = 30.0
SUFFIX: Final = ".queue-lock"


def lock_file_path(database_path: str) -> Path:
    """The file whose ``flock`` the queue's writers take (beside the database file)."""
    return Path(database_path + SUFFIX)


class WriteGate:
    """The gate of one SQLite database file, for this process."""

    def __init__(self, database_path: str) -> None:
        self.database_path = database_path
        self._lock = threading.Lock()
        self._descriptor: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the gate for the block (threads of this process first, then processes)."""
        with self._lock:
            descriptor = self._open()
            locked = self._take(descriptor)
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)

    def _open(self) -> int:
        if self._descriptor is None:
            path = self.database_path + SUFFIX
            self._descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._descriptor

    def _take(self, descriptor: int) -> bool:
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    logger.warning(
                        "%s%s held for %.0f s; writing without it",
                        self.database_path,
                        SUFFIX,
                        MAX_WAIT_SECONDS,
                    )
                    return False
                time.sleep(POLL_SECONDS)

    def forget_after_fork(self) -> None:
        # The descriptor's lock is shared with the parent, and a thread lock another parent thread
        # held at the fork would stay locked here: start afresh (the inherited descriptor is only
        # closed, which never releases the parent's lock while the parent keeps its own).
        self._lock = threading.Lock()
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)


# Gates keep their file open; a process that has used more database files than this (a test run)
# closes the least recently used (it reopens on its next write).
MAX_OPEN_GATES: Final = 16
_gates: OrderedDict[str, WriteGate] = OrderedDict()
_gates_lock = threading.Lock()


def gate_for(database_path: str) -> WriteGate:
    """This process's gate for ``database_path`` (one per file, shared by every store on it)."""
    with _gates_lock:
        gate = _gates.get(database_path)
        if gate is None:
            gate = _gates[database_path] = WriteGate(database_path)
            evicted = _gates.popitem(last=False)[1] if len(_gates) > MAX_OPEN_GATES else None
        else:
            _gates.move_to_end(database_path)
            evicted = None
    if evicted is not None:
        evicted.close()
    return gate


def _after_fork_in_child() -> None:
    global _gates_lock
    _gates_lock = threading.Lock()
    for gate in _gates.values():
        gate.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
