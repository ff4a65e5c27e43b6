"""The job machinery of one process: its worker (unless ``RET_WORKER_CONCURRENCY=0``) and its
periodic scheduler. ``build_resources`` builds it; the API's lifespan or ``ret worker`` starts and
stops it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from api.core.config import Settings
from api.core.database import Database
from api.workers.queue import JobQueue
from api.workers.records import DEFAULT_CLOCK, Clock
from api.workers.scheduler import PeriodicTask, Scheduler
from api.workers.transport import LocalWakeup
from api.workers.worker import Worker, process_owner
from api.workers.worker_config import WorkerConfig


class JobWorkers:
    """Starts and stops this process's worker and scheduler together."""

    def __init__(
        self, database: Database, queue: JobQueue, worker: Worker | None, *, clock: Clock = DEFAULT_CLOCK
    ) -> None:
        self.database = database
        self.queue = queue
        self.worker = worker
        self.owner = worker.owner if worker else process_owner()
        self._clock = clock
        self._scheduler: Scheduler | None = None

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    def start(self, periodic_tasks: Sequence[PeriodicTask] = ()) -> None:
        """Start the worker and a scheduler for ``periodic_tasks`` plus the task modules' own."""
        if self.started:
            raise RuntimeError("job workers already started")
        tasks = [*periodic_tasks, *self.queue.registry.periodic_tasks()]
        self._scheduler = Scheduler(self.database, tasks, owner=self.owner, clock=self._clock)
        if self.worker is not None:
            if isinstance(self.queue.transport, LocalWakeup):
                self.queue.transport.subscribe(self.worker.wake)
            self.worker.start()
        self._scheduler.start()

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop the scheduler, then the worker (running jobs get the grace period); idempotent."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        scheduler.stop()
        if self.worker is not None:
            if isinstance(self.queue.transport, LocalWakeup):
                self.queue.transport.unsubscribe(self.worker.wake)
            self.worker.stop(grace_seconds)

    @asynccontextmanager
    async def running(self, periodic_tasks: Sequence[PeriodicTask] = ()) -> AsyncIterator[None]:
        """Run the workers for the duration of the block (the API's lifespan)."""
        self.start(periodic_tasks)
        try:
            yield
        finally:
            await asyncio.to_thread(self.stop)


def build_job_workers(
    settings: Settings, database: Database, queue: JobQueue, *, concurrency: int | None = None
) -> JobWorkers:
    """This process's workers as configured (``concurrency`` overrides ``RET_WORKER_CONCURRENCY``)."""
    config = WorkerConfig.from_settings(settings, concurrency)
    worker = Worker(database, queue.registry, config, settings=settings) if config.concurrency else None
    return JobWorkers(database, queue, worker)
