"""``ret worker --processes N``: a parent that forks N worker processes and replaces any that dies.

The parent imports everything once and forks, so a replacement starts in milliseconds instead of
re-importing the application (seconds on a small machine). It forks before it opens anything or
starts a thread: each child builds its own resources. SIGTERM or SIGINT to the parent is passed to
every child, which shuts down gracefully (``JOBS_SHUTDOWN_GRACE_SECONDS``); the parent exits when
they all have.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Final

logger = logging.getLogger(__name__)

# A child that dies sooner than this after starting is restarted after a pause, not at once, so a
# worker that cannot start (database down) does not spin.
QUICK_EXIT_SECONDS: Final = 1.0
RESTART_PAUSE_SECONDS: Final = 0.5


class Supervisor:
    def __init__(self, processes: int, serve: Callable[[], int]) -> None:
        self.processes = processes
        self.serve = serve
        self.children: dict[int, float] = {}  # pid -> monotonic start time
        self.stopping = False

    def run(self) -> int:
        """Fork the workers and keep ``processes`` of them alive until told to stop."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self.processes):
            self._fork()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            logger.warning("worker process %d exited with status %d; starting another", pid, code)
            if time.monotonic() - started < QUICK_EXIT_SECONDS:
                time.sleep(RESTART_PAUSE_SECONDS)
            if not self.stopping:
                self._fork()
        return 0

    def _fork(self) -> None:
        pid = os.fork()
        if pid == 0:
            self._run_child()
        self.children[pid] = time.monotonic()
        if self.stopping:  # the signal arrived while forking
            os.kill(pid, signal.SIGTERM)

    def _run_child(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = 1
        try:
            code = self.serve()
        except BaseException:
            logger.exception("worker process %d failed", os.getpid())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def supervise(processes: int, serve: Callable[[], int]) -> int:
    """Run ``serve`` in ``processes`` forked children, restarting any that exits; return 0 once a
    SIGTERM/SIGINT has stopped them all."""
    return Supervisor(processes, serve).run()
