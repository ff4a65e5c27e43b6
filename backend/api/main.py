"""The application factory: ``create_app()`` wires middleware and routers; its lifespan builds
every long-lived resource and closes it on shutdown.

``uvicorn api.main:app`` works too: ``app`` is built on first access, not at import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.core.config import Settings, get_settings, resolve_jwt_secret, warn_ignored_variables
from api.core.logging import configure_logging
from api.errors import install_error_handlers
from api.middleware.request_context import RequestContextMiddleware
from api.middleware.security_headers import SecurityHeadersMiddleware
from api.resources import AppResources
from api.routers import health_router
from api.services.health_service import check_directory_writable

logger = logging.getLogger(__name__)

API_PREFIX = "/api"
RUNTIME_SUBDIRECTORIES = ("sessions",)


def build_resources(settings: Settings) -> AppResources:
    """Create the runtime directories and every long-lived resource, failing with a named cause."""
    root = settings.ret_runtime_root
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in RUNTIME_SUBDIRECTORIES:
            (root / name).mkdir(exist_ok=True)
    except OSError as exc:
        raise RuntimeError(f"RET_RUNTIME_ROOT {root} cannot be created: {exc}") from exc
    warn_ignored_variables()
    resources = AppResources(settings=settings, jwt_secret=resolve_jwt_secret(settings))
    resources.readiness_probes["runtime_root"] = partial(check_directory_writable, root)
    return resources


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API. ``settings`` defaults to the process-wide settings from the environment."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.resources = build_resources(settings)
        logger.info("RET API ready (env=%s, runtime root %s)", settings.env, settings.ret_runtime_root)
        try:
            yield
        finally:
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
    app.include_router(api)
    # Added innermost first: request context ends up outermost (DESIGN.md §5).
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
    app.add_middleware(RequestContextMiddleware)
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    # Lazy module attribute so `uvicorn api.main:app` works without building anything at import.
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app
