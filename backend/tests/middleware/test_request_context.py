from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.core.config import Settings
from api.main import create_app


@pytest.fixture
def failing_client(settings: Settings) -> TestClient:
    app = create_app(settings)

    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    return TestClient(app, raise_server_exceptions=False)


def test_request_id_is_generated_when_absent(client: TestClient) -> None:
    request_id = client.get("/api/health").headers["X-Request-ID"]
    assert len(request_id) == 32


def test_valid_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/api/health", headers={"X-Request-ID": "abc-123.x_y"})
    assert response.headers["X-Request-ID"] == "abc-123.x_y"


@pytest.mark.parametrize("bad", ["has space", "x" * 200, "semi;colon", "<script>"])
def test_malformed_request_id_is_replaced(client: TestClient, bad: str) -> None:
    response = client.get("/api/health", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad


def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found", "code": "not_found"}
    assert "X-Request-ID" in response.headers


def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = client.delete("/api/health")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_unhandled_error_is_json_500_without_internals(
    failing_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with failing_client, caplog.at_level(logging.INFO):
        response = failing_client.get("/api/boom", headers={"X-Request-ID": "req-500"})
    body = response.json()
    assert response.status_code == 500
    assert body == {"detail": "Internal server error", "code": "internal_error", "request_id": "req-500"}
    assert "hunter2" not in response.text
    assert response.headers["X-Request-ID"] == "req-500"
    error = next(r for r in caplog.records if r.name == "api.errors")
    assert error.request_id == "req-500"  # type: ignore[attr-defined]
    assert error.exc_info is not None


def test_one_access_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="api.access"):
        client.get("/api/health", headers={"X-Request-ID": "req-log"})
    lines = [r for r in caplog.records if r.name == "api.access"]
    assert len(lines) == 1
    assert lines[0].getMessage().startswith("GET /api/health 200 ")
    assert lines[0].request_id == "req-log"  # type: ignore[attr-defined]


def test_security_headers_are_set(client: TestClient) -> None:
    headers = client.get("/api/health").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_validation_error_keeps_fastapi_shape_and_adds_code(app: FastAPI, settings: Settings) -> None:
    @app.get("/api/echo")
    def echo(count: int) -> int:
        return count

    with TestClient(app) as client:
        response = client.get("/api/echo", params={"count": "many"})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["detail"][0]["loc"] == ["query", "count"]
