"""One user of the running server: an HTTP client that logs in and walks the workspace routes."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx

from tests.conftest import PASSWORD
from tests.e2e.sse import follow_job

JOB_DEADLINE_SECONDS = 60.0


class ApiUser:
    """A user's client. No keep-alive: every request opens a connection, so the kernel spreads them
    over the server's worker processes, as a browser's would be behind a proxy."""

    def __init__(self, base_url: str, username: str) -> None:
        self.username = username
        self.http = httpx.Client(
            base_url=base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.id = 0

    def __enter__(self) -> ApiUser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> httpx.Response:
        """Send a request and check its status (the body is shown when it is not the one expected)."""
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response

    def json(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        return self.call(method, path, expect, **kwargs).json()

    def login(self) -> None:
        """Log in: the access token goes into every later request, the refresh cookie into the jar."""
        body = self.json("POST", "/api/auth/login", json={"username": self.username, "password": PASSWORD})
        self.http.headers["Authorization"] = f"Bearer {body['access_token']}"
        self.id = int(body["user"]["id"])

    def create_session(self, name: str) -> str:
        return str(self.json("POST", "/api/sessions", 201, json={"name": name})["id"])

    def upload(self, session_id: str, name: str, data: bytes) -> list[dict[str, Any]]:
        files = [("files", (name, data, "application/zip"))]
        uploaded: list[dict[str, Any]] = self.json(
            "POST", f"/api/sessions/{session_id}/files", 201, files=files
        )
        return uploaded

    def start_conversion(self, session_id: str) -> str:
        body = self.json("POST", f"/api/sessions/{session_id}/conversions", 202, json={"formats": ["csv"]})
        return str(body["job_id"])

    def follow_job(self, job_id: str) -> list[dict[str, Any]]:
        """The job's SSE frames, to the final one."""
        return follow_job(self.http, job_id, JOB_DEADLINE_SECONDS)

    def outputs(self, session_id: str) -> dict[str, dict[str, Any]]:
        """The session's output files by name."""
        files = self.json("GET", f"/api/sessions/{session_id}/files")
        return {stored["name"]: stored for stored in files if stored["kind"] == "output"}
