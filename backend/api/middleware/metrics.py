"""Counts every HTTP request and observes its latency, by route template, method and status.

Pure ASGI, just inside the request context (DESIGN.md §5), so it sees rate-limit 429s, 404s and
unhandled errors (counted as 500, then re-raised for the request context to answer). The route
template comes from ``api.middleware.rate_limit.route_template`` (the router's own matching), cached
per path; paths no route matches share the label ``unmatched`` and unknown methods ``other``, so a
client cannot grow the label sets. Per request: one counter increment, one histogram observation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final

from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.metrics import HTTP_METHODS, ProcessMetrics
from api.middleware.rate_limit import TEMPLATE_CACHE_SIZE, app_routes, route_template

UNMATCHED: Final = "unmatched"
OTHER_METHOD: Final = "other"


class MetricsMiddleware:
    """See the module docstring. ``clock`` gives seconds (monotonic); tests pass their own."""

    def __init__(
        self, app: ASGIApp, metrics: ProcessMetrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock
        self._routes: Sequence[BaseRoute] = ()
        # The app's routes never change after start-up: a path is matched once, not per request.
        self._template = lru_cache(maxsize=TEMPLATE_CACHE_SIZE)(self._find_template)
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._observe(scope, status, self.clock() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in HTTP_METHODS else OTHER_METHOD
        if not self._routes:
            self._routes = app_routes(scope["app"])
        route = self._template(method, scope.get("root_path", ""), scope["path"])
        key = (route, method, str(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.http_requests.labels(*key),
                self.metrics.http_duration.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def _find_template(self, method: str, root_path: str, path: str) -> str:
        scope = {"type": "http", "method": method, "root_path": root_path, "path": path, "headers": []}
        return route_template(self._routes, scope) or UNMATCHED
