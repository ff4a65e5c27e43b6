from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import api.main
from api.core.config import Settings
from api.main import create_app
from tests.conftest import make_settings


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


def test_lifespan_installs_and_closes_the_process_session_cache(settings: Settings) -> None:
    from api.core import session_cache

    with TestClient(create_app(settings)) as client:
        cache = client.app.state.resources.session_cache  # type: ignore[attr-defined]
        assert session_cache.get_session_cache() is cache
        session_cache.set_cache("user:1:x", {"a": 1})
        assert cache.get("user:1:x") == {"a": 1}
    assert session_cache._process_cache is None


def test_unusable_session_db_fails_start_up_naming_the_setting(settings: Settings) -> None:
    settings.ret_session_db.parent.mkdir(parents=True, exist_ok=True)
    settings.ret_session_db.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(RuntimeError, match="RET_SESSION_DB"), TestClient(create_app(settings)):
        pass


def test_first_start_in_development_creates_admin_and_prints_password_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, env="development")
    with TestClient(create_app(settings)) as client:
        printed = capsys.readouterr().out
        password = re.search(r"password (\S+)", printed).group(1)  # type: ignore[union-attr]
        response = client.post("/api/auth/login", json={"username": "admin", "password": password})
        assert response.json()["user"]["role"] == "admin"
    with TestClient(create_app(settings)):
        assert "First admin" not in capsys.readouterr().out


def test_configured_admin_password_is_used_and_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        tmp_path, env="development", ret_admin_username="boss", ret_admin_password="top-secret-phrase-42"
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/api/auth/login", json={"username": "boss", "password": "top-secret-phrase-42"}
        )
        assert response.status_code == 200
    assert "top-secret-phrase-42" not in capsys.readouterr().out


def test_production_refuses_to_start_with_schema_behind(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, env="production")
    with pytest.raises(RuntimeError, match="ret db upgrade"), TestClient(create_app(settings)):
        pass


def test_weak_configured_admin_password_fails_start_up_naming_the_setting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, env="development", ret_admin_password="short")
    with pytest.raises(RuntimeError, match="RET_ADMIN_PASSWORD"), TestClient(create_app(settings)):
        pass
