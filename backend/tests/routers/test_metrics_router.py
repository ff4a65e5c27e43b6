"""GET /api/metrics: who may read it, and the counts it shows after real traffic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tests.conftest import UserFactory, make_settings
from tests.support.jobs import wait_until

SCRAPE_TOKEN = "scrape-token-0123456789abcdef"
DEPOSIT = (
    b'<doi_batch xmlns="http://www.crossref.org/schema/5.3.1"><head><doi_batch_id>m</doi_batch_id></head>'
    b"<body>"
    + b"".join(f"<book><title>T{n}</title></book>".encode() for n in range(3))
    + b"</body></doi_batch>"
)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        metrics_bearer_token=SCRAPE_TOKEN,
        rate_limit_rules={"GET /api/auth/me": "1/minute"},
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/api/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def test_without_a_token_the_answer_is_401_json(metrics_client: TestClient) -> None:
    response = metrics_client.get("/api/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_a_wrong_bearer_token_is_401(metrics_client: TestClient) -> None:
    response = metrics_client.get("/api/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert response.status_code == 401
    assert SCRAPE_TOKEN not in response.text


def test_a_user_who_is_not_admin_gets_403(metrics_client: TestClient) -> None:
    users = UserFactory(metrics_client)
    users.create("bob")
    response = metrics_client.get("/api/metrics", headers=users.login("bob"))
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


def test_an_admin_reads_the_metrics(metrics_client: TestClient) -> None:
    users = UserFactory(metrics_client)
    users.create("root", role="admin")
    response = metrics_client.get("/api/metrics", headers=users.login("root"))
    assert response.status_code == 200
    assert "ret_http_requests_total" in response.text


def test_the_scrape_token_reads_the_metrics(metrics_client: TestClient) -> None:
    assert (
        "ret_jobs_oldest_queued_age_seconds"
        in metrics_client.get("/api/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text
    )


def test_without_a_scrape_token_setting_only_admins_read(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path)), raise_server_exceptions=False) as client:
        response = client.get("/api/metrics", headers={"Authorization": "Bearer "})
        assert response.status_code == 401


def test_disabled_metrics_answer_404_like_an_unknown_path(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, metrics_enabled=False))) as client:
        response = client.get("/api/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        assert response.status_code == 404
        assert response.json() == client.get("/api/unknown").json()


def test_a_scrape_after_traffic_counts_it(metrics_client: TestClient) -> None:
    users = UserFactory(metrics_client)
    users.create("carol")
    headers = users.login("carol")
    headers = users.login("carol")
    assert metrics_client.get("/api/no-such-route/42").status_code == 404
    assert metrics_client.get("/api/auth/me", headers=headers).status_code == 200
    assert metrics_client.get("/api/auth/me", headers=headers).status_code == 429
    session = metrics_client.post("/api/sessions", json={"name": "m"}, headers=headers).json()["id"]
    upload = [("files", ("a.xml", DEPOSIT, "application/xml"))]
    assert (
        metrics_client.post(f"/api/sessions/{session}/files", files=upload, headers=headers).status_code
        == 201
    )
    job_id = metrics_client.post(f"/api/sessions/{session}/conversions", json={}, headers=headers).json()[
        "job_id"
    ]
    queue = metrics_client.app.state.resources.jobs  # type: ignore[attr-defined]
    wait_until(lambda: queue.get(job_id).is_terminal, timeout=120, what="the conversion to end")

    scraped = scrape(metrics_client)

    requests = "ret_http_requests_total"
    assert value(scraped, requests, route="/api/auth/login", method="POST", status="200") == 2
    assert value(scraped, requests, route="unmatched", method="GET", status="404") == 1
    assert value(scraped, requests, route="/api/auth/me", method="GET", status="200") == 1
    assert value(scraped, requests, route="/api/auth/me", method="GET", status="429") == 1
    route = "/api/sessions/{session_id}/conversions"
    assert value(scraped, requests, route=route, method="POST", status="202") == 1
    latency = "ret_http_request_duration_seconds_count"
    assert value(scraped, latency, route="/api/auth/me", method="GET") == 2
    assert value(scraped, "ret_rate_limit_decisions_total", decision="denied") == 1
    assert value(scraped, "ret_rate_limit_decisions_total", decision="allowed") >= 6
    assert value(scraped, "ret_session_cache_sets_total") >= 2  # a login session each
    assert value(scraped, "ret_session_cache_entries") >= 2
    assert value(scraped, "ret_jobs", type="conversion.run", state="succeeded") == 1
    assert value(scraped, "ret_jobs", type="conversion.run", state="queued") == 0
    assert value(scraped, "ret_jobs_oldest_queued_age_seconds") == 0
    assert value(scraped, "ret_job_duration_seconds_gcount", type="conversion.run", state="succeeded") == 1
    assert value(scraped, "ret_conversion_records") == 3
    assert value(scraped, "ret_conversion_bytes") == len(DEPOSIT)


def test_each_scrape_adds_only_what_happened_since(metrics_client: TestClient) -> None:
    users = UserFactory(metrics_client)
    users.create("dave")
    users.login("dave")
    first = value(scrape(metrics_client), "ret_session_cache_sets_total")
    users.login("dave")
    second = value(scrape(metrics_client), "ret_session_cache_sets_total")
    assert first >= 1
    assert second - first == 1  # the second login's session, counted once
