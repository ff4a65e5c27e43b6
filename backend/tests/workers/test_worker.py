"""A worker in this process: running, progress, cancellation, timeouts, retries, leases, shutdown."""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.core.database import Database
from api.workers.leases import LeaseStore
from api.workers.queue import JobQueue
from api.workers.records import JobRecord, Outcome
from api.workers.transport import LocalWakeup
from api.workers.worker import Worker
from tests.support.job_tasks import gate
from tests.support.jobs import FakeUtcClock, wait_until
from tests.workers.conftest import make_worker


@contextmanager
def running_in_background(worker: Worker) -> Iterator[None]:
    """``worker.run_once()`` in another thread, joined at the end of the block."""
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=30)
        assert not thread.is_alive()


def _state(queue: JobQueue, job_id: str) -> str:
    return queue.get(job_id).state


def _ended(queue: JobQueue, job_id: str) -> JobRecord | None:
    record = queue.get(job_id)
    return record if record.is_terminal else None


def test_a_job_runs_and_succeeds_with_its_result(queue: JobQueue, worker: Worker) -> None:
    job = queue.submit("tests.echo", {"value": "hi"})
    assert worker.run_once() == job.id
    done = queue.get(job.id)
    assert (done.state, done.result, done.attempts, done.progress) == (
        "succeeded",
        {"value": "hi", "required": 0, "attempt": 1},
        1,
        100,
    )


def test_run_once_finds_nothing_when_no_job_is_ready(queue: JobQueue, worker: Worker) -> None:
    queue.submit("tests.echo", delay_seconds=60)
    assert worker.run_once() is None


def test_higher_priority_runs_first(queue: JobQueue, worker: Worker, clock: FakeUtcClock) -> None:
    queue.submit("tests.echo")
    clock.advance(1)
    urgent = queue.submit("tests.echo", priority=10)
    assert worker.run_once() == urgent.id


def test_progress_is_stored_while_the_job_runs(queue: JobQueue, worker: Worker, gate_name: str) -> None:
    job = queue.submit("tests.wait", {"gate_name": gate_name})
    with running_in_background(worker):
        wait_until(lambda: queue.get(job.id).progress > 0, what="a progress report")
        assert queue.get(job.id).progress_message == f"waiting for {gate_name}"
        gate(gate_name).set()
    assert _state(queue, job.id) == "succeeded"


def test_cancelling_a_running_job_stops_it_at_its_next_progress_report(
    queue: JobQueue, worker: Worker, gate_name: str
) -> None:
    job = queue.submit("tests.wait", {"gate_name": gate_name})
    with running_in_background(worker):
        wait_until(lambda: _state(queue, job.id) == "running", what="the job to start")
        queue.cancel(job.id)
        wait_until(lambda: _ended(queue, job.id), what="the job to stop")
    assert _state(queue, job.id) == "cancelled"


def test_a_cancelled_queued_job_never_starts(queue: JobQueue, worker: Worker) -> None:
    job = queue.submit("tests.echo")
    queue.cancel(job.id)
    assert worker.run_once() is None
    assert queue.get(job.id).started_at is None


def test_a_job_past_its_timeout_fails_at_its_next_progress_report(
    queue: JobQueue, worker: Worker, clock: FakeUtcClock, gate_name: str
) -> None:
    job = queue.submit("tests.wait", {"gate_name": gate_name}, timeout_seconds=60)
    with running_in_background(worker):
        wait_until(lambda: queue.get(job.id).progress > 0, what="the job to report")
        clock.advance(61)
        ended = wait_until(lambda: _ended(queue, job.id), what="the timeout")
    assert (ended.state, ended.error_type, ended.attempts) == ("failed", "JobTimeout", 1)


def test_the_monitor_ends_a_silent_job_past_its_timeout(
    queue: JobQueue, worker: Worker, clock: FakeUtcClock, gate_name: str
) -> None:
    job = queue.submit("tests.silent_wait", {"gate_name": gate_name}, timeout_seconds=60)
    with running_in_background(worker):
        wait_until(lambda: _state(queue, job.id) == "running", what="the job to start")
        clock.advance(61)
        worker.monitor_once()
        assert (_state(queue, job.id), queue.get(job.id).error_type) == ("failed", "JobTimeout")
        gate(gate_name).set()  # the task returns later: its result must not count
    assert (_state(queue, job.id), queue.get(job.id).result) == ("failed", None)


def test_a_failed_attempt_is_retried_after_exponential_backoff_with_jitter(
    queue: JobQueue, worker: Worker, clock: FakeUtcClock
) -> None:
    job = queue.submit("tests.flaky", {"failures": 2}, max_attempts=3)
    delays = []
    for _ in range(2):
        before = clock()
        assert worker.run_once() == job.id
        record = queue.get(job.id)
        assert (record.state, record.error_type) == ("queued", "ConnectionError")
        delays.append((record.run_after - before).total_seconds())
        assert worker.run_once() is None  # not due yet
        clock.now = record.run_after
    assert worker.run_once() == job.id
    # Base 2 s: attempt 1 waits within [1, 2] s, attempt 2 within [2, 4] s.
    assert 1 <= delays[0] <= 2 < delays[1] <= 4 or 1 <= delays[0] <= 2 <= delays[1] <= 4
    assert (queue.get(job.id).state, queue.get(job.id).result) == ("succeeded", 3)


def test_retry_delays_differ_between_jobs_that_failed_together(
    queue: JobQueue, worker: Worker, clock: FakeUtcClock
) -> None:
    jobs = [queue.submit("tests.flaky", {"failures": 1}) for _ in range(5)]
    for _ in jobs:
        worker.run_once()
    assert len({queue.get(job.id).run_after for job in jobs}) == 5


def test_a_poison_job_is_dead_after_max_attempts_with_the_last_error(
    queue: JobQueue, worker: Worker, clock: FakeUtcClock
) -> None:
    job = queue.submit("tests.fail")
    for _ in range(3):
        assert worker.run_once() == job.id
        clock.advance(3600)
    dead = queue.get(job.id)
    assert (dead.state, dead.attempts, dead.error_type, dead.error_message) == (
        "dead",
        3,
        "RuntimeError",
        "poison on attempt 3",
    )
    assert "RuntimeError: poison on attempt 3" in (dead.error_traceback or "")


def test_job_failed_ends_the_job_without_retries(queue: JobQueue, worker: Worker) -> None:
    job = queue.submit("tests.reject", max_attempts=5)
    worker.run_once()
    failed = queue.get(job.id)
    assert (failed.state, failed.attempts, failed.error_message) == (
        "failed",
        1,
        "the input is not a deposit",
    )


def test_a_result_that_is_not_json_fails_the_job(queue: JobQueue, worker: Worker) -> None:
    job = queue.submit("tests.not_json")
    worker.run_once()
    assert (_state(queue, job.id), queue.get(job.id).error_type) == ("failed", "JobFailed")


def test_a_worker_that_lost_its_lease_cannot_change_the_outcome(
    queue: JobQueue, database: Database, clock: FakeUtcClock, worker: Worker
) -> None:
    job = queue.submit("tests.echo", {"value": "second"})
    zombie = LeaseStore(database, clock)
    stale = zombie.claim_by_id(job.id, "zombie", lease_seconds=10)
    assert stale is not None
    clock.advance(11)
    worker.reap()  # the zombie stopped renewing: the job is queued again
    clock.advance(60)  # past the retry backoff
    assert worker.run_once() == job.id
    finished = queue.get(job.id)
    assert not zombie.finish(stale.id, stale.lease_token, Outcome("failed", error=("Late", "late", None)))
    assert zombie.report_progress(stale.id, stale.lease_token, 5, "late") is None
    assert queue.get(job.id) == finished
    assert (finished.state, finished.attempts) == ("succeeded", 2)


def test_the_reaper_requeues_expired_jobs_then_marks_them_dead(
    queue: JobQueue, database: Database, clock: FakeUtcClock, worker: Worker
) -> None:
    job = queue.submit("tests.echo", max_attempts=2)
    leases = LeaseStore(database, clock)
    for expected in ("queued", "dead"):
        clock.advance(3600)
        assert leases.claim_by_id(job.id, "crashed", lease_seconds=10) is not None
        clock.advance(11)
        worker.reap()
        record = queue.get(job.id)
        assert (record.state, record.error_type) == (expected, "WorkerLost")
    assert queue.get(job.id).attempts == 2


def test_renewal_keeps_a_long_job_from_being_reaped(
    queue: JobQueue, worker: Worker, clock: FakeUtcClock, gate_name: str
) -> None:
    job = queue.submit("tests.wait", {"gate_name": gate_name, "report": False})
    with running_in_background(worker):
        wait_until(lambda: _state(queue, job.id) == "running", what="the job to start")
        for _ in range(3):
            clock.advance(8)  # the lease is 10 s; renewal is due every 10/3 s
            worker.monitor_once()
        worker.reap()
        assert _state(queue, job.id) == "running"
        gate(gate_name).set()
    assert (_state(queue, job.id), queue.get(job.id).attempts) == ("succeeded", 1)


def test_jobs_of_unregistered_types_are_never_claimed(
    queue: JobQueue, database: Database, worker: Worker
) -> None:
    job = queue.submit("tests.echo")
    with database.session(write=True) as session:
        session.execute(sa.text("UPDATE jobs SET type = 'elsewhere.only' WHERE id = :id"), {"id": job.id})
    assert worker.run_once() is None
    assert _state(queue, job.id) == "queued"


def test_run_job_runs_only_the_named_job(queue: JobQueue, worker: Worker) -> None:
    first, second = queue.submit("tests.echo"), queue.submit("tests.echo")
    assert worker.run_job(second.id)
    assert (_state(queue, first.id), _state(queue, second.id)) == ("queued", "succeeded")
    assert not worker.run_job(second.id)


def test_a_started_worker_is_woken_by_a_submit_in_its_process(
    database: Database, clock: FakeUtcClock
) -> None:
    transport = LocalWakeup()
    queue = JobQueue(database, clock=clock, transport=transport)
    worker = make_worker(database, clock, poll_interval_seconds=3600)  # only a wake-up can find it
    transport.subscribe(worker.wake)
    worker.start()
    try:
        job = queue.submit("tests.echo")
        wait_until(lambda: _ended(queue, job.id), timeout=10, what="the woken worker")
    finally:
        worker.stop()
    assert _state(queue, job.id) == "succeeded"


def test_an_idle_worker_finds_jobs_submitted_elsewhere_by_polling(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    worker = make_worker(database, clock, poll_interval_seconds=0.01)
    worker.start()
    try:
        job = queue.submit("tests.echo")  # this queue's transport knows nothing of the worker
        wait_until(lambda: _ended(queue, job.id), timeout=10, what="the polling worker")
    finally:
        worker.stop()
    assert _state(queue, job.id) == "succeeded"


def test_stop_lets_running_jobs_finish_within_the_grace_period(
    queue: JobQueue, database: Database, clock: FakeUtcClock, gate_name: str
) -> None:
    worker = make_worker(database, clock)
    worker.start()
    job = queue.submit("tests.wait", {"gate_name": gate_name})
    wait_until(lambda: _state(queue, job.id) == "running", what="the job to start")
    released: list[int] = []
    stopper = threading.Thread(target=lambda: released.append(worker.stop(grace_seconds=30)))
    stopper.start()
    gate(gate_name).set()
    stopper.join(timeout=30)
    assert (released, _state(queue, job.id)) == ([0], "succeeded")


def test_stop_releases_jobs_still_running_after_the_grace_period(
    queue: JobQueue, database: Database, clock: FakeUtcClock, gate_name: str
) -> None:
    worker = make_worker(database, clock)
    worker.start()
    job = queue.submit("tests.wait", {"gate_name": gate_name})
    wait_until(lambda: _state(queue, job.id) == "running", what="the job to start")
    assert worker.stop(grace_seconds=0.05) == 1
    released = queue.get(job.id)
    assert (released.state, released.attempts, released.error_type) == ("queued", 0, "Released")


def test_concurrent_workers_run_each_job_exactly_once(
    queue: JobQueue, database: Database, clock: FakeUtcClock, tmp_path: Path
) -> None:
    jobs = [queue.submit("tests.count", {"directory": str(tmp_path)}) for _ in range(200)]
    workers = [make_worker(database, clock, concurrency=3) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: queue.list(states=["queued", "running"], limit=1).total == 0, what="all jobs")
    finally:
        for worker in workers:
            worker.stop()
    lines = (tmp_path / f"{os.getpid()}.log").read_text().split()
    assert sorted(lines) == sorted(job.id for job in jobs)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_process_task_runs_in_the_process_pool(queue: JobQueue, worker: Worker) -> None:
    job = queue.submit("tests.cpu", {"n": 1000})
    assert worker.run_once() == job.id
    done = queue.get(job.id)
    assert done.state == "succeeded", done.error_traceback
    assert done.result["sum"] == sum(range(1000))
    assert done.result["pid"] != os.getpid()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_child_hides_the_application_it_imported_from_the_garbage_collector(
    queue: JobQueue, worker: Worker
) -> None:
    # The application's objects are frozen once (gc.freeze) and stay so for the child's later
    # jobs; a full collection then walks only what the jobs made.
    first, second = queue.submit("tests.gc_state"), queue.submit("tests.gc_state")
    assert worker.run_once() == first.id
    assert worker.run_once() == second.id
    results = [queue.get(job.id).result for job in (first, second)]
    assert results[0]["frozen"] > 10_000  # at least the modules the job's task imported
    assert results[0]["tracked"] < results[0]["frozen"]
    # Frozen once, not once per job (a frozen object freed by reference counting leaves the count).
    assert results[1]["frozen"] <= results[0]["frozen"]


def test_processes_a_process_task_starts_do_not_re_run_the_main_script(
    queue: JobQueue, worker: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As under ``ret worker``: __main__ is a script (here one that logs each time it runs). spawn
    # re-runs it once in the job's child; a process the task starts must not run it again (for
    # the console script that would import the whole application in every conversion worker).
    log = tmp_path / "runs.log"
    script = tmp_path / "main_script.py"
    script.write_text(f"open({str(log)!r}, 'a').write('ran\\n')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    job = queue.submit("tests.start_process", {})
    assert worker.run_once() == job.id
    done = queue.get(job.id)
    assert done.state == "succeeded", done.error_traceback
    assert done.result == {"exitcode": 0}
    assert log.read_text() == "ran\n"  # in the job's child only


def test_the_lease_expiry_is_set_from_the_injected_clock(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    job = queue.submit("tests.echo")
    claimed = LeaseStore(database, clock).claim_by_id(job.id, "w", lease_seconds=10)
    assert claimed is not None
    assert queue.get(job.id).lease_expires_at == clock() + timedelta(seconds=10)
