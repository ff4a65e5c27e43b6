"""The conversion routes: start a job (202), follow it through the jobs API, read the latest result
and manifest, page through tables, download through the workspace routes; owner only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.core.config import Settings
from api.main import create_app
from tests.conftest import UserFactory, make_settings
from tests.support.archives import nested, zip_bytes
from tests.support.jobs import wait_until

DEPOSIT = (
    b'<doi_batch xmlns="http://www.crossref.org/schema/5.3.1"><head><doi_batch_id>b1</doi_batch_id></head>'
    b"<body>"
    + b"".join(f"<book><title>T{n}</title></book>".encode() for n in range(5))
    + b"</body></doi_batch>"
)


def _session(client: TestClient, headers: dict[str, str], *files: tuple[str, bytes]) -> str:
    session_id = str(client.post("/api/sessions", json={"name": "c"}, headers=headers).json()["id"])
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    if parts:
        assert (
            client.post(f"/api/sessions/{session_id}/files", files=parts, headers=headers).status_code == 201
        )
    return session_id


def _start(client: TestClient, headers: dict[str, str], session_id: str, **body: Any) -> str:
    response = client.post(f"/api/sessions/{session_id}/conversions", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _finished(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    """The job as the jobs API shows it once it has ended (waiting reads the queue, not HTTP, so
    polling never meets the rate limit)."""
    queue = client.app.state.resources.jobs  # type: ignore[attr-defined]
    wait_until(lambda: queue.get(job_id).is_terminal, timeout=120, what=f"job {job_id} to end")
    job: dict[str, Any] = client.get(f"/api/jobs/{job_id}", headers=headers).json()
    return job


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app and user for the read-only tests: a conversion job starts a worker process, which
    is worth sharing."""
    settings = make_settings(tmp_path_factory.mktemp("conversions"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        users = UserFactory(client)
        users.create("reader")
        yield client, users.login("reader")


@pytest.fixture(scope="module")
def converted(shared: tuple[TestClient, dict[str, str]]) -> tuple[str, dict[str, Any]]:
    client, headers = shared
    session_id = _session(client, headers, ("a.xml", DEPOSIT), ("d.zip", zip_bytes([("x/b.xml", DEPOSIT)])))
    return session_id, _finished(client, headers, _start(client, headers, session_id))


def test_conversion_routes_need_a_token(client: TestClient) -> None:
    assert client.post("/api/sessions/0123456789abcdef0123456789abcdef/conversions").status_code == 401


def test_another_users_session_answers_404(
    client: TestClient, auth_headers: dict[str, str], users: UserFactory
) -> None:
    session_id = _session(client, auth_headers)
    users.create("mallory")
    other = users.login("mallory")
    assert client.post(f"/api/sessions/{session_id}/conversions", headers=other).status_code == 404
    assert client.get(f"/api/sessions/{session_id}/conversions/latest", headers=other).status_code == 404
    assert client.get(f"/api/sessions/{session_id}/tables/book", headers=other).status_code == 404


def test_a_conversion_job_succeeds_with_progress_at_100(converted: tuple[str, dict[str, Any]]) -> None:
    _, job = converted
    assert (job["state"], job["progress"], job["type"]) == ("succeeded", 100, "conversion.run")
    assert job["result"]["summary"]["records"] == 10
    assert job["result"]["tables"] == [{"record_type": "book", "file": "book.csv", "rows": 10}]


def test_latest_gives_the_job_and_the_manifest(
    shared: tuple[TestClient, dict[str, str]], converted: tuple[str, dict[str, Any]]
) -> None:
    (client, auth_headers), (session_id, job) = shared, converted
    body = client.get(f"/api/sessions/{session_id}/conversions/latest", headers=auth_headers).json()
    assert body["job"]["id"] == job["id"]
    assert [entry["source"] for entry in body["manifest"]["files"]] == ["a.xml", "d.zip", "d.zip!/x/b.xml"]


def test_latest_without_any_conversion_is_404(client: TestClient, auth_headers: dict[str, str]) -> None:
    session_id = _session(client, auth_headers)
    response = client.get(f"/api/sessions/{session_id}/conversions/latest", headers=auth_headers)
    assert (response.status_code, response.json()["code"]) == (404, "conversion_not_found")


def test_tables_are_paged_as_json_rows(
    shared: tuple[TestClient, dict[str, str]], converted: tuple[str, dict[str, Any]]
) -> None:
    (client, auth_headers), (session_id, _) = shared, converted
    page = client.get(f"/api/sessions/{session_id}/tables/book?offset=3&limit=4", headers=auth_headers).json()
    assert page["columns"] == ["source_file", "record_index", "record_type", "head.doi_batch_id", "title"]
    assert page["rows"] == [
        ["a.xml", "4", "book", "b1", "T3"],
        ["a.xml", "5", "book", "b1", "T4"],
        ["d.zip!/x/b.xml", "1", "book", "b1", "T0"],
        ["d.zip!/x/b.xml", "2", "book", "b1", "T1"],
    ]
    assert (page["offset"], page["limit"], page["total"]) == (3, 4, 10)


def test_an_unknown_table_is_404(
    shared: tuple[TestClient, dict[str, str]], converted: tuple[str, dict[str, Any]]
) -> None:
    (client, auth_headers), (session_id, _) = shared, converted
    response = client.get(f"/api/sessions/{session_id}/tables/journal", headers=auth_headers)
    assert (response.status_code, response.json()["code"]) == (404, "table_not_found")


def test_outputs_download_through_the_workspace_routes(
    shared: tuple[TestClient, dict[str, str]], converted: tuple[str, dict[str, Any]]
) -> None:
    (client, auth_headers), (session_id, _) = shared, converted
    files = client.get(f"/api/sessions/{session_id}/files", headers=auth_headers).json()
    outputs = {item["name"]: item["id"] for item in files if item["kind"] == "output"}
    assert sorted(outputs) == ["book.csv", "manifest.json"]
    download = client.get(f"/api/sessions/{session_id}/files/{outputs['book.csv']}", headers=auth_headers)
    assert download.text.splitlines()[1] == "a.xml,1,book,b1,T0"


def test_an_invalid_record_path_is_422(client: TestClient, auth_headers: dict[str, str]) -> None:
    session_id = _session(client, auth_headers)
    response = client.post(
        f"/api/sessions/{session_id}/conversions", json={"record_path": "no/slash"}, headers=auth_headers
    )
    assert (response.status_code, response.json()["code"]) == (422, "invalid_record_path")


def test_an_unknown_format_is_422(client: TestClient, auth_headers: dict[str, str]) -> None:
    session_id = _session(client, auth_headers)
    response = client.post(
        f"/api/sessions/{session_id}/conversions", json={"formats": ["pdf"]}, headers=auth_headers
    )
    assert response.status_code == 422


@pytest.fixture
def idle_client(tmp_path: Path) -> Iterator[TestClient]:
    """An app without in-process workers: submitted jobs stay queued."""
    settings: Settings = make_settings(tmp_path, ret_worker_concurrency=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_starting_again_while_one_is_pending_returns_the_same_job(idle_client: TestClient) -> None:
    users = UserFactory(idle_client)
    users.create("alice")
    headers = users.login("alice")
    session_id = _session(idle_client, headers, ("a.xml", DEPOSIT))
    assert _start(idle_client, headers, session_id) == _start(
        idle_client, headers, session_id, formats=["xlsx"]
    )


@pytest.fixture
def shallow_client(tmp_path: Path) -> Iterator[TestClient]:
    settings: Settings = make_settings(tmp_path, max_nested_zip_depth=2)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_a_limit_breach_fails_the_job_naming_the_limit(shallow_client: TestClient) -> None:
    users = UserFactory(shallow_client)
    users.create("alice")
    headers = users.login("alice")
    session_id = _session(shallow_client, headers, ("deep.zip", nested(3)))
    job = _finished(shallow_client, headers, _start(shallow_client, headers, session_id))
    assert job["state"] == "failed"
    assert "MAX_NESTED_ZIP_DEPTH=2" in job["error"]["message"]
