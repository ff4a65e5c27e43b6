"""Figures of the jobs table for ``/api/metrics``, read at scrape time.

The jobs table is shared by every API process and every ``ret worker``, so figures read from it are
the same whichever process answers a scrape, wherever the jobs ran. Finished jobs stay in the table
until pruning (``JOBS_RETENTION_DAYS``): run times and conversion figures describe the finished jobs
the table still holds, and drop when old jobs are pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Float, Table, case, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from api.core.database import Database
from api.models import Job
from api.workers.leases import state_is
from api.workers.records import DEFAULT_CLOCK, Clock

jobs = cast(Table, Job.__table__)

# Upper bounds (seconds) of the run-time histogram: sub-second echo jobs to hour-long conversions.
DURATION_BUCKETS: Final = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# A job that ran: it has both timestamps. A cancelled job may have run or not.
RAN_STATES: Final = ("succeeded", "failed", "cancelled", "dead")


class _SecondsBetween(FunctionElement[float]):
    """``end - start`` in seconds; each database spells it its own way."""

    type = Float()
    inherit_cache = True


@compiles(_SecondsBetween)
def _seconds_between(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


# julianday() is a double of days: run times come out within about 50 µs, plenty for buckets.
@compiles(_SecondsBetween, "sqlite")
def _seconds_between_sqlite(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@dataclass(frozen=True, slots=True)
class RunTimes:
    """Run times of finished jobs of one type and state: cumulative counts per bucket bound in
    ``DURATION_BUCKETS`` (then +Inf, which equals ``count``), their number and their sum."""

    buckets: tuple[int, ...]
    count: int
    sum_seconds: float


@dataclass(frozen=True, slots=True)
class JobFigures:
    jobs: dict[tuple[str, str], int]  # (type, state) -> jobs in the table
    oldest_queued_wait_seconds: float  # since the oldest runnable queued job became runnable; 0: none
    run_times: dict[tuple[str, str], RunTimes]  # (type, state) of jobs that ran -> their run times
    conversion_records: int  # records converted by the succeeded conversion jobs in the table
    conversion_bytes: int  # bytes of XML those jobs converted


class JobStats:
    """Reads ``JobFigures`` from one record store. ``conversion_task`` names the conversion jobs,
    whose results carry ``summary.records`` and ``xml_bytes``."""

    def __init__(self, database: Database, conversion_task: str, *, clock: Clock = DEFAULT_CLOCK) -> None:
        self._database = database
        self._conversion_task = conversion_task
        self._clock = clock

    def read(self) -> JobFigures:
        """Every figure, in one read transaction."""
        now = self._clock()
        with self._database.engine.connect() as connection:
            counts = connection.execute(_count_by_state()).all()
            oldest = connection.execute(_oldest_runnable(now)).scalar_one()
            run_times = connection.execute(_run_times()).all()
            records, xml_bytes = connection.execute(_conversions(self._conversion_task)).one()
        return JobFigures(
            jobs={(row[0], row[1]): row[2] for row in counts},
            oldest_queued_wait_seconds=0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0),
            run_times={(row[0], row[1]): _run_times_of(row[2:]) for row in run_times},
            conversion_records=int(records),
            conversion_bytes=int(xml_bytes),
        )


def _count_by_state() -> Any:
    return select(jobs.c.type, jobs.c.state, func.count()).group_by(jobs.c.type, jobs.c.state)


def _oldest_runnable(now: datetime) -> Any:
    return select(func.min(jobs.c.run_after)).where(state_is("queued"), jobs.c.run_after <= now)


def _run_times() -> Any:
    seconds = _SecondsBetween(jobs.c.started_at, jobs.c.finished_at)
    bounds = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
    ran: ColumnElement[bool] = or_(*(state_is(state) for state in RAN_STATES))
    return (
        select(jobs.c.type, jobs.c.state, func.count(), func.sum(seconds), *bounds)
        .where(ran, jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None))
        .group_by(jobs.c.type, jobs.c.state)
    )


def _conversions(task_name: str) -> Any:
    records = jobs.c.result[("summary", "records")].as_integer()
    # A float: a sum of bytes overflows PostgreSQL's 32-bit INTEGER.
    xml_bytes = jobs.c.result["xml_bytes"].as_float()
    return select(func.coalesce(func.sum(records), 0), func.coalesce(func.sum(xml_bytes), 0)).where(
        jobs.c.type == task_name, state_is("succeeded")
    )


def _run_times_of(row: Any) -> RunTimes:
    count, total, *buckets = row
    # A clock step backwards can make a run time negative; it still counts in the lowest bucket.
    return RunTimes(tuple(int(value or 0) for value in buckets), int(count), float(total or 0.0))
