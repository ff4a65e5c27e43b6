"""/api/metrics under ``ret serve --workers 2``: any worker answers with every worker's counts."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.jobs import wait_until
from tests.support.server import running_server, server_environment

SCRAPE_TOKEN = "multiworker-scrape-token-0123456789"
REQUESTS = 40

pytestmark = pytest.mark.slow


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def test_every_worker_reports_the_whole_servers_counts(tmp_path: Path) -> None:
    env = server_environment(
        tmp_path,
        METRICS_BEARER_TOKEN=SCRAPE_TOKEN,
        METRICS_SYNC_INTERVAL_SECONDS="0.2",
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_DEFAULT="10000/minute",
    )
    (tmp_path / "runtime" / "metrics").mkdir(parents=True)
    (tmp_path / "runtime" / "metrics" / "counter_1.db").write_bytes(b"left by an earlier server")
    with running_server(env, workers=2) as base_url:
        # A new connection per request, so the kernel spreads them over both workers.
        for _ in range(REQUESTS):
            assert httpx.get(base_url + "/api/nothing-here").status_code == 404
        scrapes = 0

        def scrape() -> str:
            nonlocal scrapes
            scrapes += 1
            response = httpx.get(
                base_url + "/api/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
            )
            assert response.status_code == 200, response.text
            return response.text

        text = scrape()
        requests = sample(text, "ret_http_requests_total", route="unmatched", method="GET", status="404")
        assert requests == REQUESTS
        # Limiter counters reach the shared files every 0.2 s from each worker: wait for both.
        wait_until(
            lambda: (
                sample(scrape(), "ret_rate_limit_decisions_total", decision="allowed") == REQUESTS + scrapes
            ),
            timeout=30,
            what="both workers' rate-limit counts",
        )
