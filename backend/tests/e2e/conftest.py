"""A real ``ret serve --workers 2`` (SQLite stores, no Redis, rate limiting on) with two fresh users,
created by an admin through the API (the admin itself comes from ``ret users create --admin``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import PASSWORD
from tests.support.server import run_cli, running_server, server_environment

ADMIN = "admin"
USERNAMES = ("alice", "bob")
# Generous, so the journey never meets it, but on: every request passes through the middleware.
RATE_LIMIT = "6000/minute burst 1000"


@dataclass(frozen=True)
class Server:
    base_url: str
    runtime: Path

    @property
    def session_db(self) -> Path:
        return self.runtime / "ret_session.db"

    @property
    def record_db(self) -> Path:
        return self.runtime / "ret.db"

    def session_directory(self, session_id: str) -> Path:
        return self.runtime / "sessions" / session_id


def _create_users(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as admin:
        login = admin.post("/api/auth/login", json={"username": ADMIN, "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for username in USERNAMES:
            body = {"username": username, "password": PASSWORD, "role": "user"}
            created = admin.post("/api/admin/users", json=body, headers=headers)
            assert created.status_code == 201, created.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = Path(tmp_path_factory.mktemp("e2e"))
    env = server_environment(root, RATE_LIMIT_ENABLED="true", RATE_LIMIT_DEFAULT=RATE_LIMIT)
    run_cli(["users", "create", ADMIN, "--admin", "--password-stdin"], env, stdin=PASSWORD + "\n")
    with running_server(env, workers=2) as base_url:
        _create_users(base_url)
        yield Server(base_url, root / "runtime")
