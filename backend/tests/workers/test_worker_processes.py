"""The acceptance runs across real ``ret worker`` processes: SIGKILL, SIGSTOP, scale, periodic."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.core.database import Database
from api.workers.queue import JobQueue
from api.workers.records import JobRecord
from api.workers.write_gate import lock_file_path
from tests.support.jobs import wait_until, worker_environment, worker_processes

pytestmark = pytest.mark.slow


def _pending(queue: JobQueue) -> int:
    return queue.list(states=["queued", "running"], limit=1).total


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def _holds_no_write_lock(database_url: str) -> bool:
    path = _sqlite_path(database_url)
    with lock_file_path(path).open("a") as gate:
        try:
            fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(gate, fcntl.LOCK_UN)
    probe = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


def _pause_outside_a_write(pid: int, database_url: str) -> None:
    """SIGSTOP ``pid`` at a moment it holds neither the writer gate nor SQLite's write lock (a
    stopped holder stalls every writer until it continues; docs/jobs.md, "Operating it")."""
    while True:
        os.kill(pid, signal.SIGSTOP)
        if _holds_no_write_lock(database_url):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)  # let it finish its transaction, then try again


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_job_succeeds_through_fifty_sigkills_of_worker_processes(
    database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(2026)
    queue = JobQueue(Database(database_url))
    log = tmp_path / "executions.log"
    jobs = [
        queue.submit("tests.record", {"log": str(log), "seconds": rng.uniform(0.15, 0.3)}) for _ in range(200)
    ]
    env = worker_environment(
        tmp_path, database_url, JOBS_LEASE_SECONDS="1", JOBS_RETRY_BACKOFF_SECONDS="0.05", LOG_LEVEL="ERROR"
    )
    kills = 0
    with worker_processes(env, processes=3, concurrency=2) as workers:
        wait_until(log.exists, timeout=60, what="the first execution")
        while kills < 50:
            time.sleep(rng.uniform(0.03, 0.2))  # a random moment
            if live := workers.children():
                os.kill(rng.choice(live), signal.SIGKILL)
                kills += 1
        assert _pending(queue) > 0, "the run ended before the last kill: make the jobs longer"
        wait_until(lambda: _pending(queue) == 0, timeout=120, what="every job to end")
    executions = Counter(line.split()[0] for line in log.read_text().splitlines())
    records = [queue.get(job.id) for job in jobs]
    assert Counter(record.state for record in records) == {"succeeded": 200}
    assert all(record.attempts >= executions[record.id] >= 1 for record in records)
    assert any(record.attempts > 1 for record in records)  # some executions were killed and rerun
    assert all(record.result["attempt"] == record.attempts for record in records)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stopped_worker_cannot_change_the_outcome_after_it_continues(
    database_url: str, tmp_path: Path
) -> None:
    queue = JobQueue(Database(database_url))
    env = worker_environment(
        tmp_path,
        database_url,
        JOBS_LEASE_SECONDS="0.4",
        JOBS_RETRY_BACKOFF_SECONDS="0.01",
        LOG_LEVEL="WARNING",
    )
    with worker_processes(env, processes=2, concurrency=1) as workers:
        for round_number in range(20):
            folder = tmp_path / f"round-{round_number}"
            folder.mkdir()
            job = queue.submit("tests.hold", {"directory": str(folder)}, max_attempts=5)
            marker = folder / f"started-{job.id}"
            zombie = int(
                wait_until(lambda m=marker: m.exists() and m.read_text(), what="attempt 1").split()[0]
            )
            _pause_outside_a_write(zombie, database_url)
            try:
                done: JobRecord = wait_until(
                    lambda job_id=job.id: (record := queue.get(job_id)).is_terminal and record,
                    what="another worker to finish the job",
                )
                (folder / "release").touch()
            finally:
                os.kill(zombie, signal.SIGCONT)
            wait_until(
                lambda job_id=job.id: workers.logged(job_id, "lease lost"), what="the zombie's attempt"
            )
            assert done.state == "succeeded"
            assert done.attempts >= 2
            assert done.result["pid"] != zombie
            assert queue.get(job.id) == done  # 0 double finalisations


# PostgreSQL runs 2,000: each of its round trips costs about 0.5 ms on the 2-core CI machine.
@pytest.mark.parametrize(
    ("database_url", "count"), [("sqlite", 5000), ("postgresql", 2000)], indirect=["database_url"]
)
def test_four_worker_processes_run_5000_jobs_exactly_once(
    database_url: str, database: Database, tmp_path: Path, count: int
) -> None:
    queue = JobQueue(database)
    runs = tmp_path / "runs"
    runs.mkdir()
    ids = {queue.submit("tests.count", {"directory": str(runs)}).id for _ in range(count)}
    env = worker_environment(tmp_path, database_url, LOG_LEVEL="ERROR")
    with worker_processes(env, processes=4, concurrency=2):
        wait_until(lambda: _pending(queue) == 0, timeout=240, what="5,000 jobs")
    logs = list(runs.glob("*.log"))
    executions = Counter(line for path in logs for line in path.read_text().split())
    assert set(executions) == ids
    assert set(executions.values()) == {1}
    assert len(logs) >= 2  # the work was shared between processes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_periodic_task_runs_once_per_interval_across_three_processes(
    database_url: str, database: Database, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks.log"
    env = worker_environment(tmp_path, database_url, RET_TEST_TICK_LOG=str(ticks), LOG_LEVEL="ERROR")
    query = sa.text("SELECT slot, claimed_by FROM periodic_runs WHERE name = 'tests.tick' ORDER BY slot")

    def slots() -> list[sa.Row[tuple[int, str]]]:
        with database.session() as session:
            return list(session.execute(query))

    def contested() -> bool:
        # One process may win the first slots in a row (its scheduler woke first each time): wait
        # until at least two have won one, so the checks below cover claims from several processes.
        rows = slots()
        return len(rows) >= 8 and len({row.claimed_by for row in rows}) >= 2

    with worker_processes(env, processes=3, concurrency=1):
        wait_until(contested, timeout=90, what="8 intervals, claimed by at least two processes")
    rows = slots()
    numbers = [row.slot for row in rows]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # every interval, in order
    assert len(ticks.read_text().splitlines()) == len(rows)  # each ran exactly once
    assert len({row.claimed_by for row in rows}) >= 2  # by whichever process won the slot
