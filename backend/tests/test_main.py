from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import api.main
from api.core.config import Settings
from api.main import create_app


def test_lifespan_creates_runtime_directories(settings: Settings) -> None:
    with TestClient(create_app(settings)):
        assert (settings.ret_runtime_root / "sessions").is_dir()


def test_every_route_is_under_api_and_documented(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert "/api/health" in paths
    assert "/api/ready" in paths
    assert all(path.startswith("/api/") for path in paths)


def test_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "RET v4 API"


def test_module_app_is_built_lazily_on_first_access() -> None:
    assert api.main._app is None or isinstance(api.main._app, FastAPI)
    assert isinstance(api.main.app, FastAPI)
    assert api.main.app is api.main.app


def test_unusable_runtime_root_fails_start_up_naming_the_setting(settings: Settings) -> None:
    settings.ret_runtime_root.parent.mkdir(parents=True, exist_ok=True)
    settings.ret_runtime_root.write_text("not a directory", encoding="utf-8")
    with pytest.raises(RuntimeError, match="RET_RUNTIME_ROOT"), TestClient(create_app(settings)):
        pass
