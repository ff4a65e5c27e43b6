"""Rate limiting of every request: one GCRA hit per request, between CORS and the routers.

Pure ASGI. For each HTTP request outside ``RATE_LIMIT_EXEMPT_PATHS`` it picks the policies (the
``RATE_LIMIT_RULES`` entry of the matched route template, else ``RATE_LIMIT_DEFAULT``), the identity
(``api.middleware.client_identity``), and asks the app's ``RateLimiter``, through a ``HitBatcher``:
the requests of one event-loop iteration are decided in one store transaction. Refused: 429
``{"detail", "code": "rate_limited", "policy"}`` with ``Retry-After``. Admitted: the response gets
``RateLimit-Policy`` and ``RateLimit`` (``api.services.rate_limit_headers``). ``RATE_LIMIT_DRY_RUN``
reports and never refuses. Nothing here answers 500: a failure admits (``RATE_LIMIT_ON_STORE_ERROR=
open``) or answers 503 (``closed``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, cast

from fastapi.routing import iter_route_contexts
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.config import Settings
from api.core.rate_limit_policy import ExemptPaths, Policy, parse_policies, parse_rules
from api.errors import error_body
from api.middleware.client_identity import client_identity
from api.services.rate_limit_batcher import HitBatcher
from api.services.rate_limit_headers import header_fields
from api.services.rate_limiter import Decision, RateLimitUnavailableError, rate_limited_error

logger = logging.getLogger(__name__)

TEMPLATE_CACHE_SIZE: Final = 4096
UNAVAILABLE_RETRY_SECONDS: Final = "1"


class RateLimitMiddleware:
    """See the module docstring. ``settings`` fixes the policies, rules and modes at start-up."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.default = parse_policies(settings.rate_limit_default)
        self.rules = parse_rules(settings.rate_limit_rules)
        self.exempt = ExemptPaths(settings.rate_limit_exempt_paths)
        self.dry_run = settings.rate_limit_dry_run
        self.fail_closed = settings.rate_limit_on_store_error == "closed"
        self._warned_anonymous = False
        self._routes: Sequence[BaseRoute] = ()
        self._batcher: HitBatcher | None = None
        # The app's routes never change after start-up: a hot path is matched once, not per request.
        self._template = lru_cache(maxsize=TEMPLATE_CACHE_SIZE)(self._find_template)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        answer: Response | None = None
        decision: Decision | None = None
        try:
            decision = await self._decide(scope)
        except Exception as exc:
            answer = self._on_failure(scope, exc)
        if decision is not None and not decision.allowed:
            answer = self._on_refusal(scope, decision)
        if answer is not None:
            await answer(scope, receive, send)
        elif decision is not None and decision.states:
            await self.app(scope, receive, _with_headers(send, decision))
        else:
            await self.app(scope, receive, send)

    def _on_failure(self, scope: Scope, exc: Exception) -> Response | None:
        """503 when failing closed, else None (admit); never a 500."""
        if isinstance(exc, RateLimitUnavailableError):
            return _unavailable(exc.detail)
        logger.error("rate limiting failed on %s %s", scope["method"], scope["path"], exc_info=exc)
        return _unavailable("Rate limiting is unavailable; try again shortly") if self.fail_closed else None

    def _on_refusal(self, scope: Scope, decision: Decision) -> Response | None:
        """The 429, or None in a dry run (logged)."""
        if self.dry_run:
            denied = decision.denied_by
            logger.info("dry run: %s %s exceeds %s", scope["method"], scope["path"], denied and denied.policy)
            return None
        error = rate_limited_error(decision)
        body = error_body(error.detail, error.code, **error.extra)
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    async def _decide(self, scope: Scope) -> Decision | None:
        policies = self._policies(scope) if self.rules else self.default
        if not policies:
            return None
        resources = scope["app"].state.resources
        identity = client_identity(scope, resources.verify_access_token)
        if identity is None:
            self._warn_anonymous()
            return None
        batcher = self._batcher
        if batcher is None or batcher.limiter is not resources.rate_limiter:  # one per app lifespan
            batcher = self._batcher = HitBatcher(resources.rate_limiter)
        return await batcher.hit(identity, policies)

    def _policies(self, scope: Scope) -> tuple[Policy, ...]:
        """The policies of the route rule that matches ``scope`` (only called when there are rules)."""
        if not self._routes:
            self._routes = app_routes(scope["app"])
        template = self._template(scope["method"], scope.get("root_path", ""), scope["path"])
        if template is None:
            return self.default
        request_method = "GET" if scope["method"] == "HEAD" else scope["method"]  # as the router does
        for method in (request_method, None):
            policies = self.rules.get((method, template))
            if policies is not None:
                return policies
        return self.default

    def _find_template(self, method: str, root_path: str, path: str) -> str | None:
        scope = {"type": "http", "method": method, "root_path": root_path, "path": path, "headers": []}
        return route_template(self._routes, scope)

    def _warn_anonymous(self) -> None:
        if not self._warned_anonymous:
            self._warned_anonymous = True
            logger.warning(
                "a request without a client address was not rate limited; serve over TCP, or "
                "behind a proxy listed in RET_TRUSTED_PROXIES"
            )


def _with_headers(send: Send, decision: Decision) -> Send:
    fields = header_fields(decision)

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *fields]
        await send(message)

    return send_with_headers


def _unavailable(detail: str) -> JSONResponse:
    body = error_body(detail, RateLimitUnavailableError.code)
    return JSONResponse(body, status_code=503, headers={"Retry-After": UNAVAILABLE_RETRY_SECONDS})


def app_routes(app: Starlette) -> Sequence[BaseRoute]:
    """The app's routes with their full paths. FastAPI keeps an included router as one route of its
    own (``_IncludedRouter``, whose ``matches`` names no template); its route contexts behave as the
    routes themselves, prefix included."""
    return [cast(BaseRoute, context) for context in iter_route_contexts(app.router.routes)]


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    """The path template of the route that would serve ``scope``, found the way Starlette's router
    finds it (first full match, else the first path-only match, as for a 405), without calling it."""
    partial: str | None = None
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return _full_template(route, {**scope, **child_scope})
        if match is Match.PARTIAL and partial is None:
            partial = getattr(route, "path", None)
    return partial


def _full_template(route: BaseRoute, scope: Scope) -> str | None:
    path: str | None = getattr(route, "path", None)
    if isinstance(route, Mount) and route.routes:
        inner = route_template(route.routes, scope)
        return route.path + inner if inner else route.path
    return path
