"""End-to-end checks of a deployment, behind ``ret validate`` and ``tests/validate_system.py``.

Each check returns a one-line detail on success and raises ``CheckFailed`` (or any exception) on
failure. A failing check never stops the others; checks that need settings are skipped (and count
as failed) when the settings do not load.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

from api.core.config import Settings, SettingsError, load_settings
from api.core.database import open_database
from api.core.session_cache import SessionCache
from api.services.health_service import check_directory_writable
from api.workers.queue import JobQueue
from api.workers.records import JobRecord
from api.workers.registry import load_task_modules, registry
from api.workers.tasks import NOOP_TASK
from api.workers.worker import Worker
from api.workers.worker_config import WorkerConfig

MIN_PYTHON = (3, 11)


class CheckFailed(Exception):
    """A check's own verdict that the deployment is not usable, with the reason."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


SettingsCheck = Callable[[Settings], str]


def check_python() -> str:
    version = sys.version_info
    found = f"{version.major}.{version.minor}.{version.micro}"
    if version[:2] < MIN_PYTHON:
        raise CheckFailed(f"Python {found} is older than {MIN_PYTHON[0]}.{MIN_PYTHON[1]}")
    return f"Python {found}"


def check_required_settings(settings: Settings) -> str:
    required = {
        "RET_RUNTIME_ROOT": str(settings.ret_runtime_root),
        "RET_SESSION_DB": str(settings.ret_session_db),
        "DATABASE_URL": settings.database_url,
    }
    missing = [name for name, value in required.items() if not value.strip()]
    if missing:
        raise CheckFailed("missing: " + ", ".join(missing))
    return f"RET_SESSION_DB={settings.ret_session_db} (REDIS_URL not needed)"


def check_runtime_root(settings: Settings) -> str:
    root = settings.ret_runtime_root
    root.mkdir(parents=True, exist_ok=True)
    check_directory_writable(root)
    return f"{root} is writable"


def check_session_cache(settings: Settings) -> str:
    """Write, read, expire, delete and prefix-clear throwaway keys on the configured store."""
    clock = _SteppedClock()
    cache = SessionCache.from_settings(settings, clock=clock)
    prefix = f"validate:{uuid.uuid4().hex}:"
    try:
        cache.set(prefix + "value", {"ok": True}, ttl_seconds=60)
        cache.set(prefix + "short", "expires", ttl_seconds=1)
        if cache.get(prefix + "value") != {"ok": True}:
            raise CheckFailed("a value written could not be read back")
        clock.advance(2)
        if cache.get(prefix + "short") is not None:
            raise CheckFailed("an expired entry was returned")
        if not cache.delete(prefix + "value"):
            raise CheckFailed("delete did not find the entry just written")
        cache.set_many({prefix + "a": 1, prefix + "b": 2})
        if cache.clear_pattern(prefix) != 2 or cache.keys(prefix):
            raise CheckFailed("prefix clear left entries behind")
    finally:
        cache.clear_pattern(prefix)
        cache.close()
    return f"read/write/TTL/delete/prefix clear ok on {settings.ret_session_db}"


class _SteppedClock:
    """Wall-clock time plus an offset, so TTL expiry is checked without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def __call__(self) -> float:
        return time.time() + self.offset


def check_auth_round_trip(settings: Settings) -> str:
    """A throwaway user logs in, reads /me, logs out; the token must then be refused."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    username, password = f"validate-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex + "-Aa1"
    with TestClient(create_app(settings, first_admin=False)) as client:
        users = client.app.state.resources.users  # type: ignore[attr-defined]
        user = users.create_user(username, password, "user")
        try:
            login = client.post("/api/auth/login", json={"username": username, "password": password})
            if login.status_code != 200:
                raise CheckFailed(f"login answered {login.status_code}: {login.text[:200]}")
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            if client.get("/api/auth/me", headers=headers).status_code != 200:
                raise CheckFailed("/api/auth/me refused a fresh token")
            if client.post("/api/auth/logout", headers=headers).status_code != 200:
                raise CheckFailed("logout failed")
            if client.get("/api/auth/me", headers=headers).status_code != 401:
                raise CheckFailed("the token was still accepted after logout")
        finally:
            users.delete_user(user.id)
    return "login, /me, logout, token refused afterwards; throwaway user removed"


def check_job_round_trip(settings: Settings) -> str:
    """Submit the built-in no-op task, run it, see it succeed; the job record is removed afterwards."""
    load_task_modules(settings.jobs_task_modules)
    database = open_database(settings)
    try:
        queue = JobQueue(database)
        started = time.perf_counter()
        job = queue.submit(NOOP_TASK, {"check": "validate"})
        try:
            # Run it here, unless a running worker (API or `ret worker`) took it first.
            config = WorkerConfig.from_settings(settings, concurrency=1)
            Worker(database, registry, config, settings=settings).run_job(job.id)
            record = _wait_for_job(queue, job.id)
        finally:
            if not queue.get(job.id).is_terminal:
                queue.cancel(job.id)
            queue.forget(job.id)
        if record.state != "succeeded" or record.result.get("echo") != {"check": "validate"}:
            raise CheckFailed(f"{NOOP_TASK} job ended {record.state}: {record.error_message}")
    finally:
        database.dispose()
    elapsed = (time.perf_counter() - started) * 1000
    return f"{NOOP_TASK} job submitted, run and succeeded in {elapsed:.0f} ms; record removed"


JOB_CHECK_TIMEOUT_SECONDS = 10.0


def _wait_for_job(queue: JobQueue, job_id: str) -> JobRecord:
    deadline = time.monotonic() + JOB_CHECK_TIMEOUT_SECONDS
    while not (record := queue.get(job_id)).is_terminal:
        if time.monotonic() > deadline:
            raise CheckFailed(f"job {job_id} did not finish within {JOB_CHECK_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.01)  # another process's worker is running it
    return record


def check_app_health(settings: Settings) -> str:
    # Imported here: the app (and its test client) is only needed by this check.
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(settings, first_admin=False)) as client:
        response = client.get("/api/health")
    if response.status_code != 200:
        raise CheckFailed(f"/api/health answered {response.status_code}: {response.text[:200]}")
    return "/api/health answered 200 in-process"


SETTINGS_CHECKS: list[tuple[str, SettingsCheck]] = [
    ("required settings", check_required_settings),
    ("runtime root writable", check_runtime_root),
    ("session cache", check_session_cache),
    ("app answers /api/health", check_app_health),
    ("auth round trip", check_auth_round_trip),
    ("job round trip", check_job_round_trip),
]


def run_checks(settings_factory: Callable[[], Settings] = load_settings) -> list[CheckResult]:
    """Run every check in order and return each outcome."""
    results = [_run("python version", check_python)]
    try:
        settings = settings_factory()
    except SettingsError as exc:
        results.append(CheckResult("settings load", False, str(exc)))
        skipped = "skipped: settings did not load"
        results += [CheckResult(name, False, skipped) for name, _ in SETTINGS_CHECKS]
        return results
    results.append(CheckResult("settings load", True, f"env={settings.env}"))
    for name, check in SETTINGS_CHECKS:
        results.append(_run(name, partial(check, settings)))
    return results


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except Exception as exc:
        reason = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
        return CheckResult(name, False, reason)


def render_text(results: list[CheckResult]) -> str:
    lines = [f"{'✅' if result.ok else '❌'} {result.name}: {result.detail}" for result in results]
    failed = sum(not result.ok for result in results)
    verdict = "all checks passed" if not failed else f"{failed} of {len(results)} checks failed"
    lines.append(verdict)
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> list[dict[str, object]]:
    return [asdict(result) for result in results]
