"""Shared helpers of the job tests: a UTC clock, record stores on SQLite and PostgreSQL, waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import psutil
import sqlalchemy as sa

from api.core.database import Database
from api.repositories import users
from tests.conftest import BACKEND_DIR
from tests.support.server import server_environment

# CI starts this server (.ci/services); trust auth, database "test".
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T = TypeVar("T")


class FakeUtcClock:
    """Aware UTC datetimes that move only when a test advances them."""

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def postgres_url(schema: str) -> str:
    """A URL whose connections use ``schema``; commits skip the WAL flush (tests need no
    durability across a server crash, and it makes each commit milliseconds faster)."""
    return f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"


def postgres_available() -> bool:
    engine = sa.create_engine(POSTGRES_SERVER)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A new schema, migrated to head; yields its URL and drops the schema afterwards."""
    schema = f"ret_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    database = Database(postgres_url(schema))
    try:
        database.upgrade()
        database.dispose()
        yield postgres_url(schema)
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def make_user(database: Database, name: str = "owner") -> int:
    with database.session(write=True) as session:
        return int(users.add(session, f"{name}-{uuid.uuid4().hex[:6]}", "not-a-hash", "user").id)


def wait_until(check: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (an event in another thread or process)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class WorkerProcesses:
    """A running ``ret worker`` (supervisor and children) and the lines it wrote to stderr."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def children(self) -> list[int]:
        """Pids of the worker processes (the supervisor's children) alive now."""
        try:
            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def logged(self, *fragments: str) -> bool:
        return any(all(fragment in line for fragment in fragments) for line in list(self.stderr_lines))

    def close(self) -> None:
        """After the process ended: collect the last lines and close the pipe."""
        self._reader.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)


def worker_environment(root: Path, database_url: str, **overrides: str) -> dict[str, str]:
    """A test server's environment for ``ret worker`` on ``database_url``, with the test tasks."""
    env = server_environment(
        root,
        DATABASE_URL=database_url,
        JOBS_TASK_MODULES='["tests.support.job_tasks"]',
        JOBS_POLL_INTERVAL_SECONDS="0.02",
    )
    env.update(overrides)
    return env


@contextmanager
def worker_processes(
    env: Mapping[str, str], processes: int = 1, concurrency: int = 2
) -> Iterator[WorkerProcesses]:
    """Run ``ret worker --processes N --concurrency C``; SIGTERM it (and wait) at the end."""
    command = [sys.executable, "-m", "api", "worker"]
    command += ["--processes", str(processes), "--concurrency", str(concurrency)]
    process = subprocess.Popen(
        command, cwd=BACKEND_DIR, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    workers = WorkerProcesses(process)
    try:
        yield workers
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in workers.children():
                os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait()
        workers.close()
