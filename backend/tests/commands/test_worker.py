"""``ret worker`` as an operator runs it: SIGTERM lets running jobs finish, or releases them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.core.database import Database
from api.workers.queue import JobQueue
from tests.support.jobs import wait_until, worker_environment, worker_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'runtime' / 'ret.db'}")
    database.upgrade()
    yield database
    database.dispose()


def _started(folder: Path, job_id: str) -> bool:
    return (folder / f"started-{job_id}").exists()


def test_sigterm_lets_the_running_job_finish_then_exits_0(database: Database, tmp_path: Path) -> None:
    queue = JobQueue(database)
    job = queue.submit("tests.hold", {"directory": str(tmp_path)})
    env = worker_environment(tmp_path, database.url, LOG_LEVEL="INFO")
    with worker_processes(env, processes=1) as worker:
        wait_until(lambda: _started(tmp_path, job.id), timeout=60, what="the job to start")
        worker.process.send_signal(signal.SIGTERM)
        wait_until(lambda: worker.logged("stopping: waiting"), what="the shutdown to begin")
        (tmp_path / "release").touch()
        assert worker.process.wait(timeout=30) == 0
    assert queue.get(job.id).state == "succeeded"


def test_sigterm_releases_a_job_that_outlives_the_grace_period(database: Database, tmp_path: Path) -> None:
    queue = JobQueue(database)
    job = queue.submit("tests.hold", {"directory": str(tmp_path)})
    env = worker_environment(tmp_path, database.url, JOBS_SHUTDOWN_GRACE_SECONDS="0.2")
    with worker_processes(env, processes=1) as worker:
        wait_until(lambda: _started(tmp_path, job.id), timeout=60, what="the job to start")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=30) == 0
    released = queue.get(job.id)
    assert (released.state, released.attempts, released.error_type) == ("queued", 0, "Released")
