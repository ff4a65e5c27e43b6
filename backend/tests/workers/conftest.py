"""Job-queue fixtures: every test here runs against SQLite and against PostgreSQL."""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import tests.support.job_tasks  # noqa: F401  (registers the test tasks)
from api.core.database import Database
from api.workers.queue import JobQueue
from api.workers.registry import load_task_modules, registry
from api.workers.runner import RetryPolicy
from api.workers.worker import Worker
from api.workers.worker_config import WorkerConfig
from tests.support.job_tasks import gate
from tests.support.jobs import FakeUtcClock, fresh_postgres_schema, postgres_available

load_task_modules()
TABLES = "jobs, periodic_runs, refresh_tokens, audit_log, users"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A record store migrated once; each test gets a copy (migrating takes a fifth of a second)."""
    path = tmp_path_factory.mktemp("template") / "ret.db"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    database.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """One fresh schema per test run (runs never collide); tests empty its tables."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (.ci/services starts it)")
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "ret.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_schema")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FakeUtcClock:
    return FakeUtcClock()


@pytest.fixture
def queue(database: Database, clock: FakeUtcClock) -> JobQueue:
    return JobQueue(database, clock=clock)


def make_worker(database: Database, clock: FakeUtcClock, **config: object) -> Worker:
    options: dict[str, object] = {
        "concurrency": 2,
        "lease_seconds": 10.0,
        "poll_interval_seconds": 0.01,
        "shutdown_grace_seconds": 5.0,
        "retry": RetryPolicy(base_seconds=2.0, max_seconds=60.0),
    }
    options.update(config)
    return Worker(database, registry, WorkerConfig(**options), clock=clock, rng=random.Random(7))  # type: ignore[arg-type]


@pytest.fixture
def worker(database: Database, clock: FakeUtcClock) -> Iterator[Worker]:
    """A worker that is not started: tests drive it with ``run_once`` and ``monitor_once``."""
    worker = make_worker(database, clock)
    yield worker
    worker.stop(grace_seconds=0)


@pytest.fixture
def gate_name() -> Iterator[str]:
    """A fresh gate for ``tests.wait``; opened at teardown so no task thread is left waiting."""
    name = uuid.uuid4().hex
    yield name
    gate(name).set()
