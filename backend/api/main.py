"""The application factory: ``create_app()`` wires middleware and routers; its lifespan builds
every long-lived resource and closes it on shutdown.

``uvicorn api.main:app`` works too: ``app`` is built on first access, not at import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.core.config import Settings, get_settings
from api.core.logging import configure_logging
from api.core.metrics import ProcessMetrics
from api.core.session_cache import install_session_cache
from api.errors import AppError, install_error_handlers
from api.middleware.metrics import MetricsMiddleware
from api.middleware.rate_limit import RateLimitMiddleware
from api.middleware.request_context import RequestContextMiddleware
from api.middleware.security_headers import SecurityHeadersMiddleware
from api.resources import AppResources, build_resources, close_resources
from api.routers import (
    admin_router,
    auth_router,
    conversions_router,
    health_router,
    jobs_router,
    metrics_router,
    sessions_router,
)
from api.services.metrics import build_metrics_service

logger = logging.getLogger(__name__)

API_PREFIX = "/api"


def bootstrap_first_admin(resources: AppResources) -> None:
    """With no users yet: create the admin (development prints a generated password once)."""
    settings = resources.settings
    if settings.env == "testing":
        return
    configured = settings.ret_admin_password.get_secret_value() if settings.ret_admin_password else None
    if configured is None and settings.env == "production":
        if not resources.users.list_users(0, 1):
            logger.warning("no users yet: create an admin with `ret users create NAME --admin`")
        return
    try:
        generated = resources.users.bootstrap_admin(settings.ret_admin_username, configured)
    except AppError as exc:
        raise RuntimeError(f"RET_ADMIN_USERNAME/RET_ADMIN_PASSWORD: {exc.detail}") from exc
    if generated:
        # Printed, never logged: the password must not end up in log files.
        print(
            f"\n  First admin created: username {settings.ret_admin_username!r}, password {generated}\n"
            "  (shown once; change it with POST /api/auth/password)\n",
            flush=True,
        )


def create_app(settings: Settings | None = None, *, first_admin: bool = True) -> FastAPI:
    """Build the API. ``settings`` defaults to the process-wide settings from the environment;
    ``first_admin=False`` skips creating the first admin (for in-process checks)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    process_metrics = ProcessMetrics(settings) if settings.metrics_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = build_resources(settings)
        app.state.resources = resources
        install_session_cache(resources.session_cache)
        try:
            # Job workers and the periodic scheduler (housekeeping once per interval across processes).
            async with (
                resources.job_workers.running(resources.periodic_tasks),
                _metrics_publishing(resources, process_metrics),
            ):
                if first_admin:
                    bootstrap_first_admin(resources)
                logger.info(
                    "RET API ready (env=%s, runtime root %s)", settings.env, settings.ret_runtime_root
                )
                yield
        finally:
            install_session_cache(None)
            close_resources(resources)
            del app.state.resources

    app = FastAPI(
        title="RET v4 API",
        version="4.0.0",
        description="Resource Extraction Tool: convert XML metadata deposits to CSV/XLSX tables.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(health_router.router)
    api.include_router(auth_router.router)
    api.include_router(admin_router.router)
    api.include_router(sessions_router.router)
    api.include_router(jobs_router.router)
    api.include_router(conversions_router.router)
    if settings.metrics_enabled:
        api.include_router(metrics_router.router)
    app.include_router(api)
    # Added innermost first: request context ends up outermost (DESIGN.md §5).
    if settings.rate_limit_enabled:
        app.add_middleware(RateLimitMiddleware, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    if process_metrics is not None:
        # Just inside the request context: it sees every answer, 429s and errors included.
        app.add_middleware(MetricsMiddleware, metrics=process_metrics)
    app.add_middleware(RequestContextMiddleware)
    return app


def _metrics_publishing(
    resources: AppResources, metrics: ProcessMetrics | None
) -> AbstractAsyncContextManager[None]:
    """Build the metrics service (when enabled) and keep this process's counters published."""
    if metrics is None:
        return nullcontext()
    resources.metrics = build_metrics_service(
        metrics, resources.settings, resources.session_cache, resources.rate_limiter, resources.database
    )
    return resources.metrics.publishing()


_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    # Lazy module attribute so `uvicorn api.main:app` works without building anything at import.
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app
