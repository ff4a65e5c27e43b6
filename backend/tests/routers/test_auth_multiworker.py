"""Auth guarantees across real worker processes (``ret serve --workers 4``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import PASSWORD
from tests.support.server import run_cli, running_server, server_environment

ROUNDS = 100
READS_PER_PHASE = 8

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = server_environment(Path(tmp_path_factory.mktemp("multiworker")))
    run_cli(["users", "create", "alice", "--password-stdin"], env, stdin=PASSWORD + "\n")
    with running_server(env, workers=4) as base_url:
        yield base_url


# No keep-alive: every request opens a new connection, so the kernel spreads them over the workers.
# (One client for all of them: building a client per request costs more than the request.)
CLIENT = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30)


def _login(base_url: str) -> httpx.Response:
    response = CLIENT.post(base_url + "/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response


def _me_status(base_url: str, token: str) -> int:
    return CLIENT.get(base_url + "/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_logout_on_one_worker_rejects_the_token_on_every_worker(server: str) -> None:
    for _ in range(ROUNDS):
        token = _login(server).json()["access_token"]
        # Every worker that answers caches the login session in its L1 first.
        assert [_me_status(server, token) for _ in range(READS_PER_PHASE)] == [200] * READS_PER_PHASE
        logout = CLIENT.post(server + "/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert logout.status_code == 200
        assert [_me_status(server, token) for _ in range(READS_PER_PHASE)] == [401] * READS_PER_PHASE


def test_concurrent_refreshes_with_one_token_exactly_one_wins(server: str) -> None:
    for _ in range(ROUNDS):
        cookie = _login(server).cookies["ret_refresh"]
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def refresh(
            cookie: str = cookie, barrier: threading.Barrier = barrier, statuses: list[int] = statuses
        ) -> None:
            barrier.wait()
            response = CLIENT.post(server + "/api/auth/refresh", headers={"Cookie": f"ret_refresh={cookie}"})
            statuses.append(response.status_code)

        threads = [threading.Thread(target=refresh) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 401]
