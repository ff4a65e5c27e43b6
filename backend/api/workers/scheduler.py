"""Periodic housekeeping (cache purge, idle-session sweep, job pruning), run once per interval
across every process that runs a scheduler.

Time is cut into slots of each task's interval (slot = floor(epoch seconds / interval)), the same
in every process. At each slot boundary every scheduler tries to insert the row (task, slot) into
``periodic_runs``; the primary key lets exactly one succeed, and that process runs the task. A slot
no process was alive for is skipped, not made up later (as cron does), and a scheduler that starts
mid-slot waits for the next boundary. Work is registered as objects with ``name``,
``interval_seconds`` and ``run`` (``AppResources.periodic_tasks`` and ``@periodic`` in task
modules).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from api.core.database import Database
from api.workers.job_store import JobStore
from api.workers.records import DEFAULT_CLOCK, Clock

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS: Final = 1.0
# Wake just after a boundary, not just before it (timer and clock drift apart a little).
BOUNDARY_MARGIN_SECONDS: Final = 0.005


class PeriodicTask(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def interval_seconds(self) -> float: ...

    @property
    def run(self) -> Callable[[], object]: ...


class Scheduler:
    """Runs ``tasks`` on their intervals in a background thread (``start``/``stop``), or one pass
    at a time (``run_due``)."""

    def __init__(
        self, database: Database, tasks: Iterable[PeriodicTask], *, owner: str, clock: Clock = DEFAULT_CLOCK
    ) -> None:
        self.owner = owner
        self._store = JobStore(database)
        self._clock = clock
        self._tasks = list(tasks)
        _check_tasks(self._tasks)
        now = clock().timestamp()
        self._last_slot = {task.name: self._slot(task, now) for task in self._tasks}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._tasks and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="job-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the task running now, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def run_due(self) -> list[str]:
        """Run every task whose next slot began, if this process wins the slot; return their names."""
        ran = []
        for task in self._tasks:
            now = self._clock()
            slot = self._slot(task, now.timestamp())
            if slot <= self._last_slot[task.name]:
                continue
            self._last_slot[task.name] = slot
            if self._store.claim_slot(task.name, slot, self.owner, now):
                _run(task)
                ran.append(task.name)
        return ran

    def seconds_to_next_slot(self) -> float:
        now = self._clock().timestamp()
        waits = [(self._slot(task, now) + 1) * task.interval_seconds - now for task in self._tasks]
        return min([MAX_WAIT_SECONDS, *waits]) + BOUNDARY_MARGIN_SECONDS

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds_to_next_slot()):
            try:
                self.run_due()
            except Exception:
                logger.exception("periodic scheduler pass failed; retrying at the next slot")

    @staticmethod
    def _slot(task: PeriodicTask, epoch_seconds: float) -> int:
        return int(epoch_seconds // task.interval_seconds)


def _check_tasks(tasks: list[PeriodicTask]) -> None:
    names = [task.name for task in tasks]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"periodic task names must be unique: {duplicates}")
    if bad := [task.name for task in tasks if not task.interval_seconds > 0]:
        raise ValueError(f"periodic tasks need a positive interval: {bad}")


def _run(task: PeriodicTask) -> None:
    started = time.perf_counter()
    try:
        outcome = task.run()
    except Exception:
        logger.exception("periodic %s failed; it runs again next interval", task.name)
        return
    elapsed = time.perf_counter() - started
    if isinstance(outcome, int) and not isinstance(outcome, bool) and outcome:
        logger.info("periodic %s: %d in %.2f s", task.name, outcome, elapsed)
    else:
        logger.debug("periodic %s done in %.2f s", task.name, elapsed)
