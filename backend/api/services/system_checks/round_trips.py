"""Round trips through the running parts: the rate limiter, the job queue, login and logout.

Each works on throwaway data (a random key, a no-op job, a random user) and removes it afterwards.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Final

from api.core.config import Settings
from api.core.database import Database
from api.core.rate_limit_policy import Policy
from api.core.rate_limit_store import build_rate_limit_store
from api.services.rate_limiter import RateLimiter
from api.services.system_checks.base import CheckFailed
from api.services.system_checks.session_store import STORE_ADVICE
from api.workers.queue import JobQueue
from api.workers.records import JobRecord
from api.workers.registry import load_task_modules, registry
from api.workers.tasks import NOOP_TASK
from api.workers.worker import Worker
from api.workers.worker_config import WorkerConfig

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

VALIDATE_POLICY: Final = Policy("validate", limit=1, period_seconds=60)
JOB_CHECK_TIMEOUT_SECONDS: Final = 10.0


def check_rate_limiter(settings: Settings) -> str:
    """A 1/minute policy on a throwaway key admits one hit and refuses the next; the key is reset."""
    key = f"validate:{uuid.uuid4().hex}"
    try:
        limiter = RateLimiter(build_rate_limit_store(settings), on_store_error="closed")
    except Exception as exc:
        raise CheckFailed(f"{exc}: {STORE_ADVICE}") from exc
    try:
        first, second = limiter.hit(key, [VALIDATE_POLICY]), limiter.hit(key, [VALIDATE_POLICY])
        limiter.reset(key)
        left = limiter.status(key)
    except Exception as exc:
        raise CheckFailed(f"{exc}: {STORE_ADVICE}") from exc
    finally:
        limiter.close()
    if not first.allowed or second.allowed:
        raise CheckFailed(
            f"a 1/minute limit decided {first.allowed}, {second.allowed} for two hits (expected allow, "
            "refuse): check the server clock and RET_SESSION_DB"
        )
    if left:
        raise CheckFailed(f"resetting the throwaway key {key} left {len(left)} bucket(s) behind")
    return "1/minute policy: first hit allowed, second refused; throwaway key removed"


def check_job_round_trip(settings: Settings) -> str:
    """Submit the built-in no-op task, run it, see it succeed; the job record is removed afterwards."""
    load_task_modules(settings.jobs_task_modules)
    database = Database(settings.database_url)  # not open_database: it would migrate
    try:
        queue = JobQueue(database)
        started = time.perf_counter()
        record = _run_noop_job(settings, database, queue)
    finally:
        database.dispose()
    if record.state != "succeeded" or record.result.get("echo") != {"check": "validate"}:
        raise CheckFailed(f"{NOOP_TASK} job ended {record.state}: {record.error_message}: see the API log")
    elapsed = (time.perf_counter() - started) * 1000
    return f"{NOOP_TASK} job submitted, run and succeeded in {elapsed:.0f} ms; record removed"


def _run_noop_job(settings: Settings, database: Database, queue: JobQueue) -> JobRecord:
    job = queue.submit(NOOP_TASK, {"check": "validate"})
    try:
        # Run it here, unless a running worker (API or `ret worker`) took it first.
        config = WorkerConfig.from_settings(settings, concurrency=1)
        Worker(database, registry, config, settings=settings).run_job(job.id)
        return _wait_for_job(queue, job.id)
    finally:
        if not queue.get(job.id).is_terminal:
            queue.cancel(job.id)
        queue.forget(job.id)


def _wait_for_job(queue: JobQueue, job_id: str) -> JobRecord:
    deadline = time.monotonic() + JOB_CHECK_TIMEOUT_SECONDS
    while not (record := queue.get(job_id)).is_terminal:
        if time.monotonic() > deadline:
            raise CheckFailed(
                f"job {job_id} did not finish within {JOB_CHECK_TIMEOUT_SECONDS:.0f} s: "
                "a worker holds it; check `ret jobs list` and the workers' logs"
            )
        time.sleep(0.01)  # another process's worker is running it
    return record


def check_auth_round_trip(settings: Settings) -> str:
    """The app starts in-process and is ready; a throwaway user logs in, reads /me, logs out; the
    token is refused afterwards; the user is removed."""
    # Imported here: only this check needs the app and its test client.
    from fastapi.testclient import TestClient

    from api.main import create_app

    # No job worker in this in-process app: it must not take the deployment's real jobs.
    quiet = settings.model_copy(update={"ret_worker_concurrency": 0, "log_level": "WARNING"})
    username, password = f"validate-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex + "-Aa1"
    with TestClient(create_app(quiet, first_admin=False)) as client:
        ready = client.get("/api/ready")
        if ready.status_code != 200:
            raise CheckFailed(f"/api/ready answered {ready.status_code}: {ready.text[:300]}")
        users = client.app.state.resources.users  # type: ignore[attr-defined]
        user = users.create_user(username, password, "user")
        try:
            _login_logout(client, username, password)
        finally:
            users.delete_user(user.id)
            # The login throttle's buckets were refunded, so they are idle: remove them now.
            client.app.state.resources.rate_limiter.purge_expired()  # type: ignore[attr-defined]
    return "/api/ready 200; login, /me, logout, token refused afterwards; throwaway user removed"


def _login_logout(client: TestClient, username: str, password: str) -> None:
    login = client.post("/api/auth/login", json={"username": username, "password": password})
    if login.status_code != 200:
        raise CheckFailed(f"login answered {login.status_code}: {login.text[:200]}")
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    if client.get("/api/auth/me", headers=headers).status_code != 200:
        raise CheckFailed("/api/auth/me refused a fresh token: check JWT_SECRET_KEY is the same everywhere")
    if client.post("/api/auth/logout", headers=headers).status_code != 200:
        raise CheckFailed("logout failed: see the API log")
    if client.get("/api/auth/me", headers=headers).status_code != 401:
        raise CheckFailed("the token was still accepted after logout: check RET_SESSION_DB is shared")
