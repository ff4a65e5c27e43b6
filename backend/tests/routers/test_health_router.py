from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from api.core.cache_contract import SessionCacheError
from api.core.config import Settings
from api.core.session_cache import SessionCache


def test_health_answers_ok(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_each_check(client: TestClient) -> None:
    response = client.get("/api/ready")
    assert response.status_code == 200
    checks = {"runtime_root": "ok", "session_store": "ok", "record_store": "ok"}
    assert response.json() == {"status": "ready", "checks": checks}


def test_ready_is_503_naming_the_part_when_runtime_root_is_not_writable(
    client: TestClient, settings: Settings
) -> None:
    root = settings.ret_runtime_root
    shutil.rmtree(root)
    root.write_text("a file where the runtime directory should be", encoding="utf-8")
    response = client.get("/api/ready")
    body = response.json()
    assert response.status_code == 503
    assert body["code"] == "not_ready"
    assert "runtime_root" in body["detail"]
    assert body["checks"]["runtime_root"] != "ok"


def test_ready_is_503_naming_the_session_store_when_writes_fail(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise SessionCacheError("session cache insert failed on ret_session.db: database or disk is full")

    monkeypatch.setattr(SessionCache, "set", disk_full)
    response = client.get("/api/ready")
    assert response.status_code == 503
    assert "session_store" in response.json()["detail"]
    assert response.json()["checks"]["runtime_root"] == "ok"
