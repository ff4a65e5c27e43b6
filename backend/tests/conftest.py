"""Shared fixtures: settings(tmp_path) → app → client. No test reads the developer's environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.core.config import Settings
from api.main import create_app

BACKEND_DIR = Path(__file__).resolve().parents[1]
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop every variable a setting could read, so tests see only what they set."""
    names = {name.upper() for name in Settings.model_fields} | {"REDIS_URL"}
    for name in list(os.environ):
        if name.upper() in names:
            monkeypatch.delenv(name)


def make_settings(root: Path, **overrides: object) -> Settings:
    """Settings isolated under ``root`` (no ``.env`` file is read)."""
    values: dict[str, object] = {
        "env": "testing",
        "ret_runtime_root": root / "runtime",
        "ret_session_db": root / "runtime" / "ret_session.db",
        "database_url": f"sqlite:///{root / 'runtime' / 'ret.db'}",
        "jwt_secret_key": TEST_SECRET,
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


PASSWORD = "correct-horse-battery"


class UserFactory:
    """Creates users through the app's own service and logs them in over HTTP."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.count = 0

    def create(self, username: str | None = None, *, role: str = "user", password: str = PASSWORD) -> int:
        self.count += 1
        username = username or f"user{self.count}"
        resources = self.client.app.state.resources  # type: ignore[attr-defined]
        return int(resources.users.create_user(username, password, role).id)

    def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.client.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def users(client: TestClient) -> UserFactory:
    return UserFactory(client)


@pytest.fixture
def auth_headers(users: UserFactory) -> dict[str, str]:
    users.create("alice")
    return users.login("alice")
