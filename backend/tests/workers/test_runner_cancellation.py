"""A job that fails after it was cancelled ends ``cancelled``, even before the worker heard of it."""

from __future__ import annotations

import threading

from api.workers.context import JobContext
from api.workers.errors import JobFailed
from api.workers.queue import JobQueue
from api.workers.registry import task
from api.workers.worker import Worker
from tests.support.job_tasks import gate
from tests.support.jobs import wait_until


@task("tests.fail_when_released")
def fail_when_released(ctx: JobContext, gate_name: str) -> None:
    """Wait without reporting progress, then fail (as a conversion whose session was removed does)."""
    gate(gate_name).wait()
    raise JobFailed("workspace session not found")


def test_a_job_failing_after_its_cancellation_ends_cancelled(
    queue: JobQueue, worker: Worker, gate_name: str
) -> None:
    job = queue.submit("tests.fail_when_released", {"gate_name": gate_name})
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    wait_until(lambda: queue.get(job.id).state == "running", what="the job to start")
    queue.cancel(job.id)  # the worker's monitor is not running: nothing relays this to the task
    gate(gate_name).set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert queue.get(job.id).state == "cancelled"
