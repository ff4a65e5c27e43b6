"""Request context: request id, access log line, and the last-resort JSON 500.

Outermost middleware. It gives every request an id (the client's ``X-Request-ID`` when it is a safe
token, otherwise a new one), echoes it on the response, logs one line per request, and turns an
unhandled exception into ``{"detail", "code": "internal_error"}`` without leaking the traceback.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.logging import request_id_var
from api.errors import error_body

logger = logging.getLogger("api.access")
error_logger = logging.getLogger("api.errors")

REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def pick_request_id(client_value: str | None) -> str:
    """Echo a well-formed client id; otherwise generate one (never trust arbitrary header text)."""
    if client_value and VALID_REQUEST_ID.fullmatch(client_value):
        return client_value
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = pick_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            body = error_body("Internal server error", "internal_error", request_id=request_id)
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.info(
                "%s %s %d %.1fms",
                scope["method"],
                scope["path"],
                status,
                elapsed_ms,
                extra={"status": status, "duration_ms": round(elapsed_ms, 2)},
            )
            request_id_var.reset(token)
