"""The long-lived resources of one app instance, built by ``create_app()``'s lifespan.

``build_resources`` opens them in order and, if one fails, closes what was already open and raises
a ``RuntimeError`` naming the setting behind the failure. ``close_resources`` closes them all; a
failure in one close never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from pydantic import SecretStr

from api.core.cache_contract import CacheBackend, SessionCacheError
from api.core.config import Settings, resolve_jwt_secret, warn_ignored_variables, workspace_idle_ttl
from api.core.database import Database, DatabaseError, open_database
from api.core.security import AccessTokens, PasswordHashing
from api.core.session_cache import build_cache
from api.services.auth_service import AuthService
from api.services.cache_maintenance import probe_session_store
from api.services.health_service import ReadinessProbe, check_directory_writable
from api.services.login_throttle import LoginThrottle
from api.services.maintenance import PeriodicTask
from api.services.rate_limiter import AccessTokenVerifier, RateLimiter, build_rate_limiter
from api.services.storage_service import StorageLimits, StorageService
from api.services.upload_budget import UploadByteBudget
from api.services.user_service import UserService
from api.workers.queue import JobQueue, QueueDefaults
from api.workers.registry import load_task_modules
from api.workers.runtime import JobWorkers, build_job_workers

if TYPE_CHECKING:
    from api.services.metrics import MetricsService

logger = logging.getLogger(__name__)

RUNTIME_SUBDIRECTORIES = ("sessions",)


@dataclass(slots=True)
class AppResources:
    """Everything the lifespan builds; handlers reach it through the aliases in ``api.deps``."""

    settings: Settings
    jwt_secret: SecretStr
    session_cache: CacheBackend
    database: Database
    access_tokens: AccessTokens
    auth: AuthService
    users: UserService
    rate_limiter: RateLimiter
    storage: StorageService
    jobs: JobQueue
    job_workers: JobWorkers
    closers: ExitStack = field(default_factory=ExitStack)
    readiness_probes: dict[str, ReadinessProbe] = field(default_factory=dict)
    periodic_tasks: list[PeriodicTask] = field(default_factory=list)
    # Rate-limit identity: the user id of a valid, verified access token (None: count by address).
    # Called on the event loop for every request with a bearer token: signature and expiry only.
    verify_access_token: AccessTokenVerifier | None = None
    # GET /api/metrics; set by create_app()'s lifespan when METRICS_ENABLED.
    metrics: MetricsService | None = None


def build_resources(settings: Settings) -> AppResources:
    """Create the runtime directories and open every long-lived resource."""
    _make_runtime_directories(settings)
    warn_ignored_variables()
    with ExitStack() as stack:
        cache = _open_session_cache(settings)
        stack.callback(_closing, "session cache", cache.close)
        database = _open_record_store(settings)
        stack.callback(_closing, "record store", database.dispose)
        limiter = build_rate_limiter(settings)
        stack.callback(_closing, "rate limiter", limiter.close)
        secret = resolve_jwt_secret(settings)
        tokens = AccessTokens(
            secret.get_secret_value(),
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.access_token_expire_seconds,
        )
        hashing = PasswordHashing(settings.password_hash_time_cost, settings.password_hash_memory_kib)
        auth = AuthService(database, cache, tokens, hashing, settings)
        auth.login_throttle = LoginThrottle(
            limiter, settings.login_attempts_per_user_ip, settings.login_attempts_per_ip
        )
        storage = build_storage(settings, cache)
        storage.upload_budget = UploadByteBudget(limiter, settings.upload_bytes_per_hour)
        auth.user_cleanups.append(storage.cleanup_user_sessions)
        jobs = _open_job_queue(settings, database)
        storage.cleanup_steps.append(("cancel jobs", jobs.cancel_for_session))
        job_workers = build_job_workers(settings, database, jobs)
        stack.callback(_closing, "job workers", job_workers.stop)
        resources = AppResources(
            settings=settings,
            jwt_secret=secret,
            session_cache=cache,
            database=database,
            access_tokens=tokens,
            auth=auth,
            users=UserService(database, auth),
            rate_limiter=limiter,
            storage=storage,
            jobs=jobs,
            job_workers=job_workers,
            closers=stack.pop_all(),
            verify_access_token=tokens.user_id_of,
        )
    resources.readiness_probes.update(
        runtime_root=partial(check_directory_writable, settings.ret_runtime_root),
        session_store=partial(probe_session_store, cache),
        record_store=database.ping,
    )
    interval = settings.session_cache_purge_interval_seconds
    resources.periodic_tasks += [
        PeriodicTask("session cache purge", interval, cache.purge_expired),
        PeriodicTask("rate-limit bucket purge", interval, limiter.purge_expired),
        PeriodicTask("workspace session sweep", interval, storage.sweep_expired),
        PeriodicTask("job pruning", settings.jobs_prune_interval_seconds, jobs.prune),
    ]
    return resources


def build_storage(settings: Settings, cache: CacheBackend) -> StorageService:
    limits = StorageLimits(
        max_upload_bytes=settings.max_upload_bytes,
        user_quota_bytes=settings.user_quota_bytes,
        max_sessions_per_user=settings.max_sessions_per_user,
        orphan_grace_seconds=settings.orphan_grace_seconds,
    )
    return StorageService(cache, settings.ret_runtime_root, workspace_idle_ttl(settings), limits)


def close_resources(resources: AppResources) -> None:
    """Close every resource, newest first."""
    resources.closers.close()


def _closing(name: str, close: Callable[[], object]) -> None:
    try:
        close()
    except Exception:
        logger.exception("closing the %s failed; continuing with the rest", name)


def _make_runtime_directories(settings: Settings) -> None:
    root = settings.ret_runtime_root
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in RUNTIME_SUBDIRECTORIES:
            (root / name).mkdir(exist_ok=True)
    except OSError as exc:
        raise RuntimeError(f"RET_RUNTIME_ROOT {root} cannot be created: {exc}") from exc


def _open_session_cache(settings: Settings) -> CacheBackend:
    try:
        return build_cache(settings)
    except SessionCacheError as exc:
        raise RuntimeError(f"RET_SESSION_DB: {exc}") from exc


def _open_job_queue(settings: Settings, database: Database) -> JobQueue:
    try:
        load_task_modules(settings.jobs_task_modules)
    except ImportError as exc:
        raise RuntimeError(f"JOBS_TASK_MODULES: {exc}") from exc
    return JobQueue(database, defaults=QueueDefaults.from_settings(settings))


def _open_record_store(settings: Settings) -> Database:
    try:
        return open_database(settings)
    except DatabaseError as exc:
        raise RuntimeError(f"DATABASE_URL: {exc}") from exc
