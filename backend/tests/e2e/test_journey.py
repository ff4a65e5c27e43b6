"""The whole journey against a real ``ret serve --workers 2`` (issue 9).

Alice logs in, opens a workspace session, uploads a nested ZIP of Crossref deposits, converts it while
following the job over SSE, downloads the CSVs and ``outputs.zip``, previews a table, starts a second
conversion and logs out while it runs; then her token is refused and nothing of hers is left: no
session directory, no ``session:`` or ``user:`` key, no job still pending (the running one is
cancelled). Bob does the same at the same time, never sees any of it, and his session outlives her
logout.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from tests.e2e.client import JOB_DEADLINE_SECONDS, ApiUser
from tests.e2e.conftest import Server
from tests.e2e.deposits import Deposit, RecordType, bulk_upload, corpus, expected_rows, nested_upload
from tests.e2e.stores import job_states, session_store_keys
from tests.support.jobs import wait_until

UPLOAD_NAME = "deposits.zip"
RECORD_TYPES: tuple[RecordType, ...] = ("book", "journal")
# Enough deposits that their conversion takes a second or more: still going when logout comes.
BULK_DEPOSITS = 600
PENDING = {"queued", "running"}
STATE_ORDER = {"queued": 0, "running": 1, "succeeded": 2}


@dataclass(frozen=True)
class Conversion:
    """One user's converted workspace session, as the journey left it."""

    session_id: str
    upload_ids: list[str]
    job_id: str
    events: list[dict[str, Any]]
    deposits: tuple[Deposit, ...]


def _convert(user: ApiUser) -> Conversion:
    """Log in, open a session, upload the nested ZIP, convert it and follow the job to its end."""
    user.login()
    session_id = user.create_session(f"{user.username}'s deposits")
    deposits = corpus(user.username)
    uploaded = user.upload(session_id, UPLOAD_NAME, nested_upload(deposits))
    job_id = user.start_conversion(session_id)
    events = user.follow_job(job_id)
    return Conversion(session_id, [stored["id"] for stored in uploaded], job_id, events, deposits)


def _assert_progress_rises_to_success(conversion: Conversion) -> None:
    events = conversion.events
    assert events, "the stream sent no frame"
    assert {event["id"] for event in events} == {conversion.job_id}
    assert [event["state"] for event in events[:-1]].count("succeeded") == 0
    states = [STATE_ORDER[event["state"]] for event in events]
    progress = [event["progress"] for event in events]
    assert states == sorted(states), events
    assert progress == sorted(progress), events
    last = events[-1]
    assert (last["state"], last["progress"], last["error"]) == ("succeeded", 100, None), last
    assert last["result"]["summary"]["converted"] == len(conversion.deposits)
    assert last["result"]["summary"]["failed"] == 0


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def _identifying(rows: list[dict[str, str]], like: list[dict[str, str]]) -> list[dict[str, str]]:
    """Each row cut down to the columns the expected rows name."""
    return [{column: row[column] for column in expected} for row, expected in zip(rows, like, strict=True)]


def _assert_outputs_downloaded(user: ApiUser, conversion: Conversion) -> dict[str, bytes]:
    """Every output file downloads whole (ETag = SHA-256), the tables hold the deposits' records,
    and ``outputs.zip`` holds exactly the same files; return them by name."""
    outputs = user.outputs(conversion.session_id)
    assert sorted(outputs) == ["book.csv", "journal.csv", "manifest.json"]
    downloaded = {}
    for name, stored in outputs.items():
        response = user.call("GET", f"/api/sessions/{conversion.session_id}/files/{stored['id']}")
        assert hashlib.sha256(response.content).hexdigest() == stored["sha256"]
        assert response.headers["etag"] == f'"{stored["sha256"]}"'
        downloaded[name] = response.content
    for record_type in RECORD_TYPES:
        expected = expected_rows(UPLOAD_NAME, conversion.deposits, record_type)
        rows = _csv_rows(downloaded[f"{record_type}.csv"])
        assert _identifying(rows, expected) == expected
    archive = user.call("GET", f"/api/sessions/{conversion.session_id}/outputs.zip")
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        assert {name: bundle.read(name) for name in bundle.namelist()} == downloaded
    return downloaded


def _assert_preview_matches_csv(user: ApiUser, conversion: Conversion, csv_data: bytes) -> None:
    header, *rows = list(csv.reader(io.StringIO(csv_data.decode("utf-8"), newline="")))
    path = f"/api/sessions/{conversion.session_id}/tables/book"
    page = user.json("GET", path, params={"limit": 1000})
    assert (page["columns"], page["rows"], page["total"]) == (header, rows, len(rows))
    second = user.json("GET", path, params={"offset": 1, "limit": 1})
    assert second["rows"] == rows[1:2]


def _assert_sees_only_own(user: ApiUser, own: Conversion, other: Conversion) -> None:
    """Listings show only the user's things; the other user's session, files and job answer 404."""
    assert [session["id"] for session in user.json("GET", "/api/sessions")] == [own.session_id]
    jobs = user.json("GET", "/api/jobs")
    assert [job["id"] for job in jobs["items"]] == [own.job_id]
    assert jobs["total"] == 1
    foreign = [
        ("GET", f"/api/sessions/{other.session_id}"),
        ("GET", f"/api/sessions/{other.session_id}/files"),
        ("GET", f"/api/sessions/{other.session_id}/outputs.zip"),
        ("GET", f"/api/sessions/{other.session_id}/tables/book"),
        ("POST", f"/api/sessions/{other.session_id}/conversions"),
        ("DELETE", f"/api/sessions/{other.session_id}"),
        ("GET", f"/api/jobs/{other.job_id}"),
        ("GET", f"/api/jobs/{other.job_id}/events"),
        ("POST", f"/api/jobs/{other.job_id}/cancel"),
    ]
    for file_id in other.upload_ids:
        foreign.append(("GET", f"/api/sessions/{other.session_id}/files/{file_id}"))
        foreign.append(("GET", f"/api/sessions/{own.session_id}/files/{file_id}"))
    for method, path in foreign:
        body = user.json(method, path, 404)
        assert set(body) == {"detail", "code"}, (method, path, body)


def _assert_present(server: Server, conversion: Conversion, user_id: int) -> None:
    assert server.session_directory(conversion.session_id).is_dir()
    assert f"session:{conversion.session_id}:meta" in session_store_keys(
        server.session_db, f"session:{conversion.session_id}:"
    )
    keys = session_store_keys(server.session_db, f"user:{user_id}:")
    assert f"user:{user_id}:workspace:{conversion.session_id}" in keys
    assert any(key.startswith(f"user:{user_id}:login:") for key in keys)


def _assert_logged_out(user: ApiUser, refresh_cookie: str) -> None:
    body = user.json("GET", "/api/auth/me", 401)
    assert body["code"] == "session_ended"
    refresh_url = user.http.base_url.join("/api/auth/refresh")
    refresh = httpx.post(refresh_url, headers={"Cookie": f"ret_refresh={refresh_cookie}"})
    assert refresh.status_code == 401, refresh.text


def _start_unfinished(user: ApiUser) -> Conversion:
    """A second session whose conversion is still queued or running when the user logs out."""
    session_id = user.create_session("converting at logout")
    uploaded = user.upload(session_id, "bulk.zip", bulk_upload(BULK_DEPOSITS))
    job_id = user.start_conversion(session_id)
    return Conversion(session_id, [stored["id"] for stored in uploaded], job_id, [], ())


def _assert_nothing_left(server: Server, user_id: int, finished: Conversion, converting: Conversion) -> None:
    """Once the user's jobs have stopped (a running one stops at its next progress report), no
    session directory, ``session:`` or ``user:`` key of theirs remains."""
    wait_until(
        lambda: PENDING.isdisjoint(job_states(server.record_db, user_id).values()),
        timeout=JOB_DEADLINE_SECONDS,
        what="the logged-out user's jobs to stop",
    )
    states = job_states(server.record_db, user_id)
    assert states[finished.job_id] == "succeeded"
    assert states[converting.job_id] in ("cancelled", "succeeded"), states
    for conversion in (finished, converting):
        assert not server.session_directory(conversion.session_id).exists()
        assert session_store_keys(server.session_db, f"session:{conversion.session_id}:") == []
    assert session_store_keys(server.session_db, f"user:{user_id}:") == []


def _convert_side_by_side(alice: ApiUser, bob: ApiUser) -> tuple[Conversion, Conversion]:
    """Both users' journeys up to a finished conversion, Bob's in a thread beside Alice's."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        bobs_run = pool.submit(_convert, bob)
        alices = _convert(alice)
        return alices, bobs_run.result(timeout=2 * JOB_DEADLINE_SECONDS)


def test_a_journey_leaves_nothing_behind_and_another_user_never_sees_it(server: Server) -> None:
    with ApiUser(server.base_url, "alice") as alice, ApiUser(server.base_url, "bob") as bob:
        alices, bobs = _convert_side_by_side(alice, bob)
        assert "RateLimit-Policy" in alice.call("GET", "/api/auth/me").headers
        for conversion in (alices, bobs):
            _assert_progress_rises_to_success(conversion)
        downloaded = _assert_outputs_downloaded(alice, alices)
        _assert_preview_matches_csv(alice, alices, downloaded["book.csv"])
        _assert_sees_only_own(bob, bobs, alices)
        _assert_sees_only_own(alice, alices, bobs)
        _assert_present(server, alices, alice.id)
        refresh_cookie = alice.http.cookies["ret_refresh"]
        converting = _start_unfinished(alice)

        logout = alice.json("POST", "/api/auth/logout")

        assert (logout["workspace_sessions_cleaned"], logout["failed_steps"]) == (2, [])
        _assert_logged_out(alice, refresh_cookie)
        _assert_nothing_left(server, alice.id, alices, converting)
        _assert_present(server, bobs, bob.id)
        assert bob.json("GET", f"/api/sessions/{bobs.session_id}")["id"] == bobs.session_id
        _assert_outputs_downloaded(bob, bobs)
