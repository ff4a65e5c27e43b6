"""Workspace sessions over HTTP: ownership, uploads, downloads, cleanup."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.core.config import Settings
from tests.conftest import UserFactory

XML = b"<doi_batch><body><book><title>T</title></book></body></doi_batch>"


@pytest.fixture
def bob_headers(users: UserFactory) -> dict[str, str]:
    users.create("bob")
    return users.login("bob")


def _create(client: TestClient, headers: dict[str, str], name: str = "ws") -> str:
    response = client.post("/api/sessions", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _upload(
    client: TestClient, headers: dict[str, str], session_id: str, *files: tuple[str, bytes]
) -> list[dict]:
    parts = [("files", (name, content, "application/octet-stream")) for name, content in files]
    response = client.post(f"/api/sessions/{session_id}/files", files=parts, headers=headers)
    assert response.status_code == 201, response.text
    return list(response.json())


def _all_files(settings: Settings) -> list[Path]:
    return [path for path in settings.ret_runtime_root.rglob("*") if path.is_file()]


def test_create_list_get_delete(client: TestClient, auth_headers: dict[str, str]) -> None:
    session_id = _create(client, auth_headers, "deposits")
    listed = client.get("/api/sessions", headers=auth_headers).json()
    assert [session["id"] for session in listed] == [session_id]
    assert client.get(f"/api/sessions/{session_id}", headers=auth_headers).json()["name"] == "deposits"
    deleted = client.delete(f"/api/sessions/{session_id}", headers=auth_headers)
    assert deleted.status_code == 200
    assert deleted.json()["failed_steps"] == []
    assert client.get(f"/api/sessions/{session_id}", headers=auth_headers).status_code == 404
    assert client.get("/api/sessions", headers=auth_headers).json() == []


def test_sessions_need_authentication(client: TestClient) -> None:
    assert client.post("/api/sessions").status_code == 401
    assert client.get("/api/sessions").status_code == 401


def test_upload_then_download_round_trips_with_hash(client: TestClient, auth_headers: dict[str, str]) -> None:
    session_id = _create(client, auth_headers)
    payload = XML * 1000
    [stored] = _upload(client, auth_headers, session_id, ("book.xml", payload))
    assert stored["sha256"] == hashlib.sha256(payload).hexdigest()
    assert stored["size"] == len(payload)
    assert stored["kind"] == "input"
    response = client.get(f"/api/sessions/{session_id}/files/{stored['id']}", headers=auth_headers)
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-type"].startswith("application/xml")
    assert response.headers["etag"] == f'"{stored["sha256"]}"'
    assert response.headers["content-disposition"].startswith('attachment; filename="book.xml"')


def test_several_files_in_one_upload_and_duplicate_names(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    session_id = _create(client, auth_headers)
    saved = _upload(client, auth_headers, session_id, ("a.xml", XML), ("a.xml", XML + b" "), ("b.zip", b"PK"))
    assert [stored["name"] for stored in saved] == ["a.xml", "a (2).xml", "b.zip"]
    listed = client.get(f"/api/sessions/{session_id}/files", headers=auth_headers).json()
    assert sorted(stored["name"] for stored in listed) == ["a (2).xml", "a.xml", "b.zip"]


def test_range_requests_and_if_none_match(client: TestClient, auth_headers: dict[str, str]) -> None:
    session_id = _create(client, auth_headers)
    payload = bytes(range(256)) * 40
    [stored] = _upload(client, auth_headers, session_id, ("data.xml", payload))
    url = f"/api/sessions/{session_id}/files/{stored['id']}"
    partial = client.get(url, headers={**auth_headers, "Range": "bytes=100-199"})
    assert partial.status_code == 206
    assert partial.content == payload[100:200]
    assert partial.headers["content-range"] == f"bytes 100-199/{len(payload)}"
    etag = client.get(url, headers=auth_headers).headers["etag"]
    cached = client.get(url, headers={**auth_headers, "If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""


def test_other_types_are_415_and_leave_nothing(
    client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    session_id = _create(client, auth_headers)
    files = [("files", ("evil.exe", b"MZ", "application/octet-stream"))]
    response = client.post(f"/api/sessions/{session_id}/files", files=files, headers=auth_headers)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert list((settings.ret_runtime_root / "sessions" / session_id / "input").iterdir()) == []


def test_non_multipart_upload_is_415(client: TestClient, auth_headers: dict[str, str]) -> None:
    session_id = _create(client, auth_headers)
    response = client.post(f"/api/sessions/{session_id}/files", content=XML, headers=auth_headers)
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../x.xml", "x.xml"),
        ("../../../../etc/cron.d/x.xml", "x.xml"),
        ("/etc/passwd.xml", "passwd.xml"),
        ("..\\..\\x.xml", "x.xml"),
        ("C:\\Windows\\x.xml", "x.xml"),
        ("a\x00b.xml", None),
        ("．．／．．／x.xml", "x.xml"),
        ("x" * 400 + ".xml", None),
        ("CON.xml", "_CON.xml"),
    ],
)
def test_hostile_filenames_never_write_outside_the_session(
    client: TestClient, auth_headers: dict[str, str], settings: Settings, raw: str, expected: str | None
) -> None:
    session_id = _create(client, auth_headers)
    [stored] = _upload(client, auth_headers, session_id, (raw, XML))
    input_dir = settings.ret_runtime_root / "sessions" / session_id / "input"
    written = [path for path in _all_files(settings) if path.suffix == ".xml"]
    assert [path.parent for path in written] == [input_dir]
    if expected is not None:
        assert stored["name"] == expected
    assert len(stored["name"].encode()) <= 200


def test_upload_over_the_file_limit_is_413_and_leaves_no_partial_file(
    client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    client.app.state.resources.storage.limits.max_upload_bytes = 10_000  # type: ignore[attr-defined]
    session_id = _create(client, auth_headers)
    files = [
        ("files", ("ok.xml", XML, "application/xml")),
        ("files", ("big.xml", b"x" * 20_000, "application/xml")),
    ]
    response = client.post(f"/api/sessions/{session_id}/files", files=files, headers=auth_headers)
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    assert list((settings.ret_runtime_root / "sessions" / session_id / "input").iterdir()) == []
    assert client.get(f"/api/sessions/{session_id}/files", headers=auth_headers).json() == []


def test_upload_over_the_quota_is_413_with_figures(client: TestClient, auth_headers: dict[str, str]) -> None:
    client.app.state.resources.storage.limits.user_quota_bytes = 5_000  # type: ignore[attr-defined]
    session_id = _create(client, auth_headers)
    _upload(client, auth_headers, session_id, ("a.xml", b"x" * 3_000))
    files = [("files", ("b.xml", b"x" * 3_000, "application/xml"))]
    response = client.post(f"/api/sessions/{session_id}/files", files=files, headers=auth_headers)
    assert response.status_code == 413
    assert response.json()["code"] == "quota_exceeded"
    assert response.json()["quota_remaining_bytes"] == 2_000


def test_session_count_is_limited(client: TestClient, auth_headers: dict[str, str]) -> None:
    client.app.state.resources.storage.limits.max_sessions_per_user = 2  # type: ignore[attr-defined]
    _create(client, auth_headers)
    _create(client, auth_headers)
    response = client.post("/api/sessions", headers=auth_headers)
    assert response.status_code == 409
    assert response.json()["code"] == "session_limit_reached"


def test_outputs_zip_streams_every_output(
    client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    session_id = _create(client, auth_headers)
    output = settings.ret_runtime_root / "sessions" / session_id / "output"
    (output / "book.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (output / "manifest.json").write_text("{}", encoding="utf-8")
    client.app.state.resources.storage.register_outputs(session_id)  # type: ignore[attr-defined]
    response = client.get(f"/api/sessions/{session_id}/outputs.zip", headers=auth_headers)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["book.csv", "manifest.json"]
        assert archive.read("book.csv") == b"a,b\n1,2\n"
    kinds = {
        f["name"]: f["kind"]
        for f in client.get(f"/api/sessions/{session_id}/files", headers=auth_headers).json()
    }
    assert kinds == {"book.csv": "output", "manifest.json": "output"}


def test_another_users_session_is_404_on_every_route(
    client: TestClient, auth_headers: dict[str, str], bob_headers: dict[str, str]
) -> None:
    session_id = _create(client, auth_headers)
    [stored] = _upload(client, auth_headers, session_id, ("a.xml", XML))
    base = f"/api/sessions/{session_id}"
    attempts = [
        client.get(base, headers=bob_headers),
        client.get(f"{base}/files", headers=bob_headers),
        client.get(f"{base}/files/{stored['id']}", headers=bob_headers),
        client.get(f"{base}/outputs.zip", headers=bob_headers),
        client.post(
            f"{base}/files", files=[("files", ("b.xml", XML, "application/xml"))], headers=bob_headers
        ),
        client.delete(base, headers=bob_headers),
    ]
    assert [response.status_code for response in attempts] == [404] * len(attempts)
    assert all(response.json()["code"] == "not_found" for response in attempts)
    assert client.get("/api/sessions", headers=bob_headers).json() == []
    assert client.get(f"{base}/files", headers=auth_headers).json()[0]["name"] == "a.xml"


@pytest.mark.parametrize("bogus", ["../../etc", "0" * 31, "ZZ" * 16, "..%2F..%2Fetc"])
def test_malformed_session_ids_are_404(client: TestClient, auth_headers: dict[str, str], bogus: str) -> None:
    assert client.get(f"/api/sessions/{bogus}/files", headers=auth_headers).status_code == 404


def test_logout_removes_the_users_sessions_and_keys(
    client: TestClient, users: UserFactory, settings: Settings
) -> None:
    user_id = users.create("carol")
    headers = users.login("carol")
    session_id = _create(client, headers)
    _upload(client, headers, session_id, ("a.xml", XML))
    response = client.post("/api/auth/logout", headers=headers)
    assert response.json()["workspace_sessions_cleaned"] == 1
    cache = client.app.state.resources.session_cache  # type: ignore[attr-defined]
    assert cache.keys(f"session:{session_id}:") == []
    assert cache.keys(f"user:{user_id}:") == []
    assert not (settings.ret_runtime_root / "sessions" / session_id).exists()


def test_upload_bytes_per_hour_are_limited_and_refunded_on_failure(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    from api.services.upload_budget import UploadByteBudget

    resources = client.app.state.resources  # type: ignore[attr-defined]
    resources.storage.upload_budget = UploadByteBudget(resources.rate_limiter, 64 * 1024)
    session_id = _create(client, auth_headers)
    _upload(client, auth_headers, session_id, ("a.xml", b"x" * 40 * 1024))
    files = [("files", ("b.xml", b"x" * 40 * 1024, "application/xml"))]
    refused = client.post(f"/api/sessions/{session_id}/files", files=files, headers=auth_headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    small = [("files", ("c.xml", b"x" * 20 * 1024, "application/xml"))]
    assert (
        client.post(f"/api/sessions/{session_id}/files", files=small, headers=auth_headers).status_code == 201
    )


def test_deleting_a_session_cancels_its_queued_jobs(client: TestClient, auth_headers: dict[str, str]) -> None:
    from api.workers.tasks import NOOP_TASK

    session_id = _create(client, auth_headers)
    resources = client.app.state.resources  # type: ignore[attr-defined]
    job = resources.jobs.submit(NOOP_TASK, {}, user_id=1, session_id=session_id, delay_seconds=3600)
    report = client.delete(f"/api/sessions/{session_id}", headers=auth_headers).json()
    assert report["steps"]["cancel jobs"] == 1
    assert resources.jobs.get(job.id).state == "cancelled"
