"""JobStats: the jobs table's figures for /api/metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa

from api.core.database import Database
from api.models import Job
from api.workers.job_stats import DURATION_BUCKETS, JobStats
from api.workers.queue import JobQueue
from tests.support.jobs import FakeUtcClock

jobs = cast(sa.Table, Job.__table__)
CONVERSION = "tests.echo"  # any task name works: the stats only read the type column


def finish(
    database: Database, job_id: str, state: str, ran_seconds: float | None, result: Any = None
) -> None:
    """Make a queued job look finished: it started at creation and ran ``ran_seconds``."""
    with database.engine.begin() as connection:
        created = connection.execute(sa.select(jobs.c.created_at).where(jobs.c.id == job_id)).scalar_one()
        started = None if ran_seconds is None else created
        finished = created + timedelta(seconds=ran_seconds or 0)
        values = {"state": state, "started_at": started, "finished_at": finished, "result": result}
        connection.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**values))


def test_jobs_are_counted_by_type_and_state(queue: JobQueue, database: Database, clock: FakeUtcClock) -> None:
    queue.submit("tests.echo")
    done = queue.submit("tests.echo").id
    queue.submit("tests.fail")
    finish(database, done, "succeeded", 1.0)
    figures = JobStats(database, CONVERSION, clock=clock).read()
    assert figures.jobs == {
        ("tests.echo", "queued"): 1,
        ("tests.echo", "succeeded"): 1,
        ("tests.fail", "queued"): 1,
    }


def test_the_oldest_runnable_queued_job_gives_the_wait(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    queue.submit("tests.echo")
    clock.advance(30)
    queue.submit("tests.echo")
    queue.submit("tests.echo", delay_seconds=3600)  # not runnable yet: not waiting
    clock.advance(12)
    assert JobStats(database, CONVERSION, clock=clock).read().oldest_queued_wait_seconds == 42


def test_no_queued_job_means_no_wait(database: Database, clock: FakeUtcClock) -> None:
    assert JobStats(database, CONVERSION, clock=clock).read().oldest_queued_wait_seconds == 0


def test_run_times_fill_cumulative_buckets(queue: JobQueue, database: Database, clock: FakeUtcClock) -> None:
    for seconds in (0.05, 4.0, 4000.0):
        finish(database, queue.submit("tests.echo").id, "succeeded", seconds)
    finish(database, queue.submit("tests.echo").id, "cancelled", None)  # cancelled before it ran
    times = JobStats(database, CONVERSION, clock=clock).read().run_times
    assert list(times) == [("tests.echo", "succeeded")]
    succeeded = times[("tests.echo", "succeeded")]
    assert succeeded.count == 3
    assert succeeded.sum_seconds == pytest.approx(4004.05, abs=0.001)  # julianday: about 50 µs
    expected = tuple(sum(s <= bound for s in (0.05, 4.0, 4000.0)) for bound in DURATION_BUCKETS)
    assert succeeded.buckets == expected


def test_conversion_figures_sum_the_succeeded_results(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    for records, size in ((3, 1000), (4, 2_500_000_000)):
        result = {"summary": {"records": records}, "xml_bytes": size}
        finish(database, queue.submit("tests.echo").id, "succeeded", 1.0, result)
    finish(database, queue.submit("tests.echo").id, "failed", 1.0, {"summary": {"records": 99}})
    figures = JobStats(database, CONVERSION, clock=clock).read()
    assert (figures.conversion_records, figures.conversion_bytes) == (7, 2_500_001_000)


def test_other_task_types_are_not_conversions(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    finish(database, queue.submit("tests.fail").id, "succeeded", 1.0, {"summary": {"records": 5}})
    figures = JobStats(database, CONVERSION, clock=clock).read()
    assert (figures.conversion_records, figures.conversion_bytes) == (0, 0)
