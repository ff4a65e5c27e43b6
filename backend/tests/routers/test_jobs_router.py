"""The jobs routes: own jobs only (admins may read anyone's), cancel, Server-Sent Events; and the
in-process workers the lifespan starts (submit returns at once, restart picks up queued jobs)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, status
from fastapi.testclient import TestClient

import tests.support.job_tasks  # noqa: F401  (registers the test tasks)
from api.core.config import Settings
from api.core.database import open_database
from api.deps import CurrentUser, JobQueueDep
from api.main import create_app
from api.workers.queue import JobQueue
from api.workers.registry import load_task_modules
from tests.conftest import UserFactory
from tests.support.job_tasks import gate
from tests.support.jobs import wait_until

load_task_modules()


def _queue(client: TestClient) -> JobQueue:
    return client.app.state.resources.jobs  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def gate_name() -> Iterator[str]:
    name = uuid.uuid4().hex
    yield name
    gate(name).set()


@pytest.fixture
def alice(users: UserFactory) -> tuple[int, dict[str, str]]:
    user_id = users.create("alice")
    return user_id, users.login("alice")


@pytest.fixture
def bob(users: UserFactory) -> tuple[int, dict[str, str]]:
    user_id = users.create("bob")
    return user_id, users.login("bob")


def _ended(queue: JobQueue, job_id: str) -> bool:
    return queue.get(job_id).is_terminal


def test_jobs_routes_need_a_token(client: TestClient) -> None:
    assert client.get("/api/jobs").status_code == 401


def test_list_shows_only_the_callers_jobs_newest_first(
    client: TestClient, alice: tuple[int, dict[str, str]], bob: tuple[int, dict[str, str]]
) -> None:
    queue = _queue(client)
    first = queue.submit("tests.echo", user_id=alice[0], delay_seconds=3600)
    second = queue.submit("tests.echo", user_id=alice[0], delay_seconds=3600)
    queue.submit("tests.echo", user_id=bob[0], delay_seconds=3600)
    body = client.get("/api/jobs", headers=alice[1]).json()
    assert body["total"] == 2
    assert {item["id"] for item in body["items"]} == {first.id, second.id}


def test_list_filters_by_session_and_state(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    queue = _queue(client)
    wanted = queue.submit("tests.echo", user_id=alice[0], session_id="s1", delay_seconds=3600)
    queue.submit("tests.echo", user_id=alice[0], session_id="s2", delay_seconds=3600)
    later = queue.submit("tests.echo", user_id=alice[0], session_id="s1", delay_seconds=3600)
    cancelled = queue.cancel(later.id)
    response = client.get("/api/jobs?session_id=s1&state=queued", headers=alice[1])
    assert [item["id"] for item in response.json()["items"]] == [wanted.id]
    response = client.get("/api/jobs?state=queued&state=cancelled&session_id=s1", headers=alice[1])
    assert {item["id"] for item in response.json()["items"]} == {wanted.id, cancelled.id}


def test_list_pages_with_offset_and_limit(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    for _ in range(3):
        _queue(client).submit("tests.echo", user_id=alice[0], delay_seconds=3600)
    body = client.get("/api/jobs?offset=1&limit=1", headers=alice[1]).json()
    assert (len(body["items"]), body["total"], body["offset"], body["limit"]) == (1, 3, 1, 1)


def test_list_rejects_an_unknown_state(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    assert client.get("/api/jobs?state=done", headers=alice[1]).status_code == 422


def test_the_owner_sees_their_job_with_its_result(
    client: TestClient, alice: tuple[int, dict[str, str]]
) -> None:
    job = _queue(client).submit("tests.echo", {"value": 7}, user_id=alice[0])
    wait_until(lambda: _ended(_queue(client), job.id), what="the job")
    body = client.get(f"/api/jobs/{job.id}", headers=alice[1]).json()
    assert (body["state"], body["result"]["value"], body["progress"], body["error"]) == (
        "succeeded",
        7,
        100,
        None,
    )
    assert "lease_token" not in body
    assert "error_traceback" not in body


def test_another_users_job_is_404_and_an_admin_may_read_it(
    client: TestClient, users: UserFactory, alice: tuple[int, dict[str, str]], bob: tuple[int, dict[str, str]]
) -> None:
    job = _queue(client).submit("tests.echo", user_id=alice[0], delay_seconds=3600)
    response = client.get(f"/api/jobs/{job.id}", headers=bob[1])
    assert (response.status_code, response.json()["code"]) == (404, "job_not_found")
    users.create("root", role="admin")
    assert client.get(f"/api/jobs/{job.id}", headers=users.login("root")).status_code == 200


def test_a_missing_job_is_404(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    assert client.get(f"/api/jobs/{uuid.uuid4()}", headers=alice[1]).status_code == 404


def test_cancel_ends_a_queued_job(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    job = _queue(client).submit("tests.echo", user_id=alice[0], delay_seconds=3600)
    response = client.post(f"/api/jobs/{job.id}/cancel", headers=alice[1])
    assert (response.status_code, response.json()["state"]) == (200, "cancelled")


def test_cancel_of_another_users_job_is_404(
    client: TestClient, alice: tuple[int, dict[str, str]], bob: tuple[int, dict[str, str]]
) -> None:
    job = _queue(client).submit("tests.echo", user_id=alice[0], delay_seconds=3600)
    assert client.post(f"/api/jobs/{job.id}/cancel", headers=bob[1]).status_code == 404
    assert _queue(client).get(job.id).state == "queued"


def test_cancel_of_a_finished_job_is_409(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    job = _queue(client).submit("tests.echo", user_id=alice[0])
    wait_until(lambda: _ended(_queue(client), job.id), what="the job")
    response = client.post(f"/api/jobs/{job.id}/cancel", headers=alice[1])
    assert (response.status_code, response.json()["code"]) == (409, "job_state_conflict")


def test_events_stream_progress_until_the_job_ends(
    client: TestClient, alice: tuple[int, dict[str, str]], gate_name: str
) -> None:
    job = _queue(client).submit("tests.wait", {"gate_name": gate_name}, user_id=alice[0])
    frames = []
    with client.stream("GET", f"/api/jobs/{job.id}/events", headers=alice[1]) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line.removeprefix("data: ")))
                if frames[-1]["progress"] > 0:
                    gate(gate_name).set()  # seen running with progress: let it finish
    assert any(frame["state"] == "running" and frame["progress"] > 0 for frame in frames)
    assert frames[-1]["state"] == "succeeded"


def test_events_of_another_users_job_are_404(
    client: TestClient, alice: tuple[int, dict[str, str]], bob: tuple[int, dict[str, str]]
) -> None:
    job = _queue(client).submit("tests.echo", user_id=alice[0], delay_seconds=3600)
    assert client.get(f"/api/jobs/{job.id}/events", headers=bob[1]).status_code == 404


def test_a_request_that_submits_a_long_job_returns_before_it_finishes(
    settings: Settings, gate_name: str
) -> None:
    probe = APIRouter()

    @probe.post("/api/probe/long-job", status_code=status.HTTP_202_ACCEPTED)
    def submit_long_job(user: CurrentUser, jobs: JobQueueDep) -> dict[str, str]:
        return {"id": jobs.submit("tests.wait", {"gate_name": gate_name}, user_id=user.user_id).id}

    app: FastAPI = create_app(settings)
    app.include_router(probe)
    with TestClient(app) as client:
        users = UserFactory(client)
        users.create("alice")
        response = client.post("/api/probe/long-job", headers=users.login("alice"))
        queue = _queue(client)
        job_id = response.json()["id"]
        # The response is here while the job is still waiting for its gate.
        assert (response.status_code, queue.get(job_id).is_terminal) == (202, False)
        gate(gate_name).set()
        wait_until(lambda: _ended(queue, job_id), what="the job to finish after the response")
        assert queue.get(job_id).state == "succeeded"


def test_jobs_queued_while_the_api_was_down_run_after_it_starts(settings: Settings) -> None:
    database = open_database(settings)
    ids = [JobQueue(database).submit("tests.echo", {"value": n}).id for n in range(3)]
    database.dispose()
    with TestClient(create_app(settings)) as client:
        queue = _queue(client)
        wait_until(lambda: all(_ended(queue, job_id) for job_id in ids), what="the queued jobs")
        assert [queue.get(job_id).state for job_id in ids] == ["succeeded"] * 3
