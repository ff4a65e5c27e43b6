"""``ret jobs`` against a real record store under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import tests.support.job_tasks  # noqa: F401  (registers the test tasks)
from api.cli import app
from api.core import config
from api.core.database import Database, open_database
from api.workers.queue import JobQueue
from api.workers.registry import load_task_modules, registry
from api.workers.worker import Worker
from api.workers.worker_config import WorkerConfig
from tests.support.jobs import FakeUtcClock

runner = CliRunner()
load_task_modules()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    for name, value in {
        "ENV": "testing",
        "RET_RUNTIME_ROOT": str(tmp_path / "runtime"),
        "RET_SESSION_DB": str(tmp_path / "runtime" / "s.db"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'runtime' / 'ret.db'}",
        "JWT_SECRET_KEY": "k" * 40,
    }.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()
    opened = open_database(config.get_settings())
    yield opened
    opened.dispose()
    config.get_settings.cache_clear()


@pytest.fixture
def queue(database: Database) -> JobQueue:
    return JobQueue(database)


def _dead_job(queue: JobQueue, database: Database) -> str:
    job = queue.submit("tests.fail", max_attempts=1)
    Worker(database, registry, WorkerConfig(concurrency=1)).run_once()
    return job.id


def test_list_prints_one_line_per_job_and_the_count(queue: JobQueue) -> None:
    job = queue.submit("tests.echo", user_id=None)
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 0, result.output
    assert job.id in result.stdout
    assert "tests.echo" in result.stdout
    assert result.stdout.strip().endswith("1 of 1 jobs")


def test_list_filters_by_state(queue: JobQueue) -> None:
    kept = queue.submit("tests.echo")
    queue.cancel(queue.submit("tests.echo").id)
    result = runner.invoke(app, ["jobs", "list", "--state", "queued"])
    assert kept.id in result.stdout
    assert "1 of 1 jobs" in result.stdout


def test_show_prints_the_job_as_json_with_its_traceback(queue: JobQueue, database: Database) -> None:
    job_id = _dead_job(queue, database)
    result = runner.invoke(app, ["jobs", "show", job_id])
    shown = orjson.loads(result.stdout)
    assert (shown["state"], shown["error_type"]) == ("dead", "RuntimeError")
    assert "Traceback" in shown["error_traceback"]


def test_show_of_a_missing_job_exits_1(queue: JobQueue) -> None:
    result = runner.invoke(app, ["jobs", "show", "nope"])
    assert result.exit_code == 1
    assert "not found" in result.output


def test_cancel_cancels_a_queued_job(queue: JobQueue) -> None:
    job = queue.submit("tests.echo")
    result = runner.invoke(app, ["jobs", "cancel", job.id])
    assert result.exit_code == 0
    assert orjson.loads(result.stdout)["state"] == "cancelled"


def test_retry_requeues_a_dead_job(queue: JobQueue, database: Database) -> None:
    job_id = _dead_job(queue, database)
    result = runner.invoke(app, ["jobs", "retry", job_id])
    assert result.exit_code == 0
    assert (queue.get(job_id).state, queue.get(job_id).attempts) == ("queued", 0)


def test_retry_of_a_queued_job_exits_1(queue: JobQueue) -> None:
    result = runner.invoke(app, ["jobs", "retry", queue.submit("tests.echo").id])
    assert result.exit_code == 1
    assert "only failed, dead or cancelled" in result.output


def test_prune_deletes_jobs_older_than_the_given_days(database: Database, queue: JobQueue) -> None:
    long_ago = JobQueue(database, clock=FakeUtcClock(datetime(2020, 1, 1, tzinfo=UTC)))
    long_ago.cancel(long_ago.submit("tests.echo").id)
    queue.cancel(queue.submit("tests.echo").id)  # finished today: kept
    result = runner.invoke(app, ["jobs", "prune", "--days", "1"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "pruned 1 finished jobs"
