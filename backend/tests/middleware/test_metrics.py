"""MetricsMiddleware: one count and one latency observation per request, by route template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from api.core.metrics import ProcessMetrics
from api.middleware.metrics import MetricsMiddleware
from tests.conftest import make_settings
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics(tmp_path: Path) -> ProcessMetrics:
    return ProcessMetrics(make_settings(tmp_path))


@pytest.fixture
def client(metrics: ProcessMetrics, clock: FakeClock) -> Iterator[TestClient]:
    router = APIRouter(prefix="/things")

    @router.get("/{thing_id}")
    def read(thing_id: int) -> dict[str, int]:
        clock.advance(0.3)  # the handler "takes" 300 ms
        return {"id": thing_id}

    @router.get("/boom/now")
    def boom() -> None:
        raise RuntimeError("unhandled")

    api = APIRouter(prefix="/api")
    api.include_router(router)
    app = FastAPI()
    app.include_router(api)
    app.add_middleware(MetricsMiddleware, metrics=metrics, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def requests(metrics: ProcessMetrics, route: str, method: str, status: str) -> float | None:
    labels = {"route": route, "method": method, "status": status}
    return metrics.registry.get_sample_value("ret_http_requests_total", labels)


def test_requests_count_by_route_template_not_raw_path(client: TestClient, metrics: ProcessMetrics) -> None:
    assert client.get("/api/things/1").status_code == 200
    assert client.get("/api/things/2").status_code == 200
    assert requests(metrics, "/api/things/{thing_id}", "GET", "200") == 2


def test_unknown_paths_share_one_label(client: TestClient, metrics: ProcessMetrics) -> None:
    client.get("/api/nowhere/1")
    client.get("/elsewhere")
    assert requests(metrics, "unmatched", "GET", "404") == 2


def test_unknown_methods_share_one_label(client: TestClient, metrics: ProcessMetrics) -> None:
    client.request("BREW", "/api/things/1")
    assert requests(metrics, "/api/things/{thing_id}", "other", "405") == 1


def test_validation_errors_count_under_their_route(client: TestClient, metrics: ProcessMetrics) -> None:
    assert client.get("/api/things/not-a-number").status_code == 422
    assert requests(metrics, "/api/things/{thing_id}", "GET", "422") == 1


def test_an_unhandled_error_counts_as_500(client: TestClient, metrics: ProcessMetrics) -> None:
    assert client.get("/api/things/boom/now").status_code == 500
    assert requests(metrics, "/api/things/boom/now", "GET", "500") == 1


def test_latency_is_observed_from_the_clock(client: TestClient, metrics: ProcessMetrics) -> None:
    client.get("/api/things/1")
    labels = {"route": "/api/things/{thing_id}", "method": "GET"}
    registry = metrics.registry
    assert registry.get_sample_value("ret_http_request_duration_seconds_sum", labels) == pytest.approx(0.3)
    below = registry.get_sample_value("ret_http_request_duration_seconds_bucket", {**labels, "le": "0.25"})
    above = registry.get_sample_value("ret_http_request_duration_seconds_bucket", {**labels, "le": "0.5"})
    assert (below, above) == (0.0, 1.0)


def test_lifespan_and_other_scopes_pass_through(metrics: ProcessMetrics, clock: FakeClock) -> None:
    app = FastAPI()
    app.add_middleware(MetricsMiddleware, metrics=metrics, clock=clock)
    with TestClient(app):
        pass
    (family,) = metrics.http_requests.collect()
    assert family.samples == []
