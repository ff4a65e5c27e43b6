"""A worker: claims jobs from the jobs table and runs them on its slot threads.

Threads, all daemons (a task stuck in C code never keeps the process alive):
- the **dispatcher** claims as many ready jobs as there are free slots. It wakes at once when this
  process submits a job (``wake``) or a slot frees, and otherwise polls every
  ``JOBS_POLL_INTERVAL_SECONDS`` with a read, so jobs from other processes start within that time
  and an idle worker never takes the write lock;
- ``concurrency`` **slot** threads run the jobs (a process-type task waits on the process pool);
  a slot that records an outcome while more jobs are ready claims the next in the same transaction;
- the **monitor** renews the leases of running jobs, relays cancellation, ends jobs past their
  timeout and runs the reaper (jobs of dead workers), on the injected clock.

``stop()`` stops claiming, lets running jobs finish within the grace period and releases the rest
(queued again, the attempt not counted). ``run_once()`` and ``run_job()`` run one job in the
caller's thread: tests, and a transport that hands a worker a job id.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from api.core.config import Settings
from api.core.database import Database
from api.workers import reaper
from api.workers.child import ProcessPool
from api.workers.context import JobContext
from api.workers.leases import LeaseStore
from api.workers.records import DEFAULT_CLOCK, ClaimedJob, Clock, Outcome
from api.workers.registry import TaskRegistry
from api.workers.runner import JobRunner
from api.workers.worker_config import WorkerConfig

logger = logging.getLogger(__name__)

ERROR_PAUSE_SECONDS: Final = 1.0


def process_owner() -> str:
    """A name for this process in lease and slot records: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class _Running:
    claimed: ClaimedJob
    context: JobContext


class Worker:
    """Claims and runs jobs of every task type in ``registry``; one per process is usual."""

    def __init__(
        self,
        database: Database,
        registry: TaskRegistry,
        config: WorkerConfig,
        *,
        settings: Settings | None = None,
        clock: Clock = DEFAULT_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.owner = process_owner()
        self._registry = registry
        self._leases = LeaseStore(database, clock)
        self._pool = ProcessPool(max(1, config.concurrency))
        self._runner = JobRunner(self._leases, registry, config.retry, self._pool, settings=settings, rng=rng)
        self._running: dict[str, _Running] = {}
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._slots: queue.SimpleQueue[_Running | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._next_renewal = self._next_reap = clock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher, the monitor and ``concurrency`` slot threads."""
        if self._threads:
            raise RuntimeError("worker already started")
        targets = [(self._slot_loop, f"job-slot-{index}") for index in range(self.config.concurrency)]
        targets += [(self._dispatch_loop, "job-dispatcher"), (self._monitor_loop, "job-monitor")]
        for target, name in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("job worker %s started (%d slots)", self.owner, self.config.concurrency)

    def wake(self) -> None:
        """Look for jobs now (this process just submitted one)."""
        self._wake.set()

    def stop(self, grace_seconds: float | None = None) -> int:
        """Stop claiming, wait up to the grace period for running jobs, release the rest; return
        how many were released."""
        grace = self.config.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            if thread.name == "job-dispatcher":
                thread.join()
        with self._changed:
            if self._running:
                logger.info("stopping: waiting up to %.1f s for %d running jobs", grace, len(self._running))
            self._changed.wait_for(lambda: not self._running, timeout=grace)
        released = self._release_all()
        self._closed.set()
        for _ in range(self.config.concurrency):
            self._slots.put(None)
        for thread in self._threads:
            thread.join(timeout=ERROR_PAUSE_SECONDS)
        self._pool.close()
        return released

    # -- one job in the caller's thread ------------------------------------------------------

    def run_once(self) -> str | None:
        """Claim the next ready job and run it here; return its id, or None if none was ready."""
        claimed = self._leases.claim(self.owner, self._registry.names(), 1, self.config.lease_seconds)
        if not claimed:
            return None
        self._execute(self._register(claimed[0]))
        return claimed[0].id

    def run_job(self, job_id: str) -> bool:
        """Claim job ``job_id`` if it is queued and due, and run it here; False if it was not."""
        claimed = self._leases.claim_by_id(job_id, self.owner, self.config.lease_seconds)
        if claimed is None:
            return False
        self._execute(self._register(claimed))
        return True

    # -- the monitor -------------------------------------------------------------------------

    def monitor_once(self) -> None:
        """End jobs past their deadline, renew leases when due (else relay cancellation), and reap
        expired leases when due."""
        now = self._leases.clock()
        with self._changed:
            running = list(self._running.values())
        for entry in running:
            deadline = entry.context.deadline
            if deadline is not None and now >= deadline and not entry.context.ended_by_worker:
                self._runner.end_for_timeout(entry.claimed, entry.context)
        if running and now >= self._next_renewal:
            self._next_renewal = now + timedelta(seconds=self.config.renew_seconds)
            self._renew(running)
        elif running:
            cancelled = self._leases.cancelled_among([entry.claimed.id for entry in running])
            for entry in running:
                if entry.claimed.id in cancelled:
                    entry.context.note_cancel_requested()
        if now >= self._next_reap:
            self._next_reap = now + timedelta(seconds=self.config.lease_seconds / 2)
            self.reap()

    def reap(self) -> None:
        """Requeue (or end) jobs whose worker stopped renewing their lease."""
        database, clock = self._leases.database, self._leases.clock
        if not reaper.has_expired(database, clock):
            return
        report = reaper.reap(
            database, clock, lambda attempt: self.config.retry.delay(attempt, self._runner.rng)
        )
        logger.warning(
            "reaper: %d jobs with an expired lease requeued, %d dead, %d cancelled",
            report.requeued,
            report.dead,
            report.cancelled,
        )

    def _renew(self, running: list[_Running]) -> None:
        held = self._leases.renew(
            {entry.claimed.id: entry.claimed.lease_token for entry in running}, self.config.lease_seconds
        )
        for entry in running:
            if entry.claimed.id not in held:
                entry.context.note_lost()
            elif held[entry.claimed.id]:
                entry.context.note_cancel_requested()

    # -- threads -----------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self._claim_for_free_slots()
            except Exception:
                logger.exception("claiming jobs failed; retrying in %.0f s", ERROR_PAUSE_SECONDS)
                self._stopping.wait(ERROR_PAUSE_SECONDS)
                continue
            if not claimed:
                self._wake.wait(self.config.poll_interval_seconds)

    def _claim_for_free_slots(self) -> int:
        free = self.config.concurrency - len(self._running)
        if free <= 0:
            return 0
        woken = self._wake.is_set()
        self._wake.clear()
        task_types = self._registry.names()
        if not woken and not self._leases.has_ready(task_types):
            return 0
        claimed = self._leases.claim(self.owner, task_types, free, self.config.lease_seconds)
        for job in claimed:
            self._slots.put(self._register(job))
        return len(claimed)

    def _slot_loop(self) -> None:
        while (entry := self._slots.get()) is not None:
            self._execute(entry)

    def _monitor_loop(self) -> None:
        while not self._closed.wait(self.config.tick_seconds):
            try:
                self.monitor_once()
            except Exception:
                logger.exception("job monitor failed; retrying at the next tick")

    # -- running one job ---------------------------------------------------------------------

    def _register(self, claimed: ClaimedJob) -> _Running:
        entry = _Running(claimed, self._runner.context_for(claimed))
        with self._changed:
            self._running[claimed.id] = entry
        return entry

    def _execute(self, entry: _Running) -> None:
        """Run ``entry``, then, while this worker runs and the queue has work, the jobs it claims
        in the same transaction that records each outcome."""
        current: _Running | None = entry
        while current is not None:
            current = self._run_one(current)

    def _run_one(self, entry: _Running) -> _Running | None:
        following: _Running | None = None
        try:
            # A job released by stop() before a slot took it is not started.
            outcome = None if entry.context.lost else self._runner.run(entry.claimed, entry.context)
            if outcome is not None:
                following = self._record(entry, outcome)
        except BaseException:
            # The outcome could not be written (e.g. the database went away): the lease lapses
            # and the reaper hands the job to another attempt.
            claimed = entry.claimed
            logger.exception("job %s (%s): the worker failed while running it", claimed.id, claimed.type)
        finally:
            with self._changed:
                self._running.pop(entry.claimed.id, None)
                if following is not None:
                    self._running[following.claimed.id] = following
                self._changed.notify_all()
            if following is None:
                self._wake.set()
        return following

    def _record(self, entry: _Running, outcome: Outcome) -> _Running | None:
        """Write ``outcome``; a started worker that is not stopping also claims its next job."""
        claimed = entry.claimed
        following = None
        if self._threads and not self._stopping.is_set():
            written, next_job = self._leases.finish_then_claim(
                claimed.id,
                claimed.lease_token,
                outcome,
                self.owner,
                self._registry.names(),
                self.config.lease_seconds,
            )
            if next_job is not None:
                following = _Running(next_job, self._runner.context_for(next_job))
        else:
            written = self._leases.finish(claimed.id, claimed.lease_token, outcome)
        if not written and not entry.context.ended_by_worker:
            logger.warning(
                "job %s (%s) attempt %d: lease lost before it finished; outcome %r discarded",
                claimed.id,
                claimed.type,
                claimed.attempts,
                outcome.state,
            )
        return following

    def _release_all(self) -> int:
        with self._changed:
            running = list(self._running.values())
        released = 0
        message = f"worker {self.owner} shut down during this attempt; queued again"
        outcome = Outcome("queued", error=("Released", message, None), refund_attempt=True)
        for entry in running:
            entry.context.note_lost()
            if self._leases.finish(entry.claimed.id, entry.claimed.lease_token, outcome):
                released += 1
        if released:
            logger.warning("released %d running jobs to the queue", released)
        return released
