"""Uploads against a real server: bounded memory, limits without Content-Length, aborted uploads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx2 as httpx
import psutil
import pytest

from tests.conftest import PASSWORD
from tests.support.server import run_cli, running_server, server_environment

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
BOUNDARY = "ret-test-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = Path(tmp_path_factory.mktemp("streaming"))
    env = server_environment(root, MAX_UPLOAD_BYTES=str(400 * MIB), USER_QUOTA_BYTES=str(2048 * MIB))
    run_cli(["users", "create", "alice", "--password-stdin"], env, stdin=PASSWORD + "\n")
    with running_server(env) as base_url:
        yield base_url, root / "runtime"


def _session(base_url: str) -> tuple[dict[str, str], str]:
    login = httpx.post(base_url + "/api/auth/login", json={"username": "alice", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    session_id = httpx.post(base_url + "/api/sessions", headers=headers).json()["id"]
    return headers, session_id


def _multipart(filename: str, size: int, chunk: int = MIB) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        "Content-Type: application/xml\r\n\r\n"
    ).encode()
    block = b"x" * chunk
    for _ in range(size // chunk):
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _server_process(base_url: str) -> psutil.Process:
    port = urlparse(base_url).port
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            assert connection.pid is not None
            return psutil.Process(connection.pid)
    raise AssertionError("server process not found")


def test_300_mib_upload_keeps_server_memory_flat(server: tuple[str, Path]) -> None:
    base_url, runtime = server
    headers, session_id = _session(base_url)
    process = _server_process(base_url)
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        response = httpx.post(
            f"{base_url}/api/sessions/{session_id}/files",
            content=_multipart("big.xml", 300 * MIB),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            timeout=300,
        )
    finally:
        done.set()
        sampler.join()
    assert response.status_code == 201, response.text
    assert response.json()[0]["size"] == 300 * MIB
    assert (peak - baseline) < 50 * MIB, f"server memory grew by {(peak - baseline) / MIB:.1f} MiB"
    assert (runtime / "sessions" / session_id / "input" / "big.xml").stat().st_size == 300 * MIB


def test_over_limit_upload_without_content_length_is_413_and_leaves_nothing(server: tuple[str, Path]) -> None:
    base_url, runtime = server
    headers, session_id = _session(base_url)
    try:
        response = httpx.post(
            f"{base_url}/api/sessions/{session_id}/files",
            content=_multipart("huge.xml", 420 * MIB),  # a generator: chunked, no Content-Length
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            timeout=300,
        )
        assert response.status_code == 413
        assert response.json()["code"] == "upload_too_large"
    except httpx.TransportError:
        pass  # the server answered 413 and closed while we were still sending: also fine
    assert list((runtime / "sessions" / session_id / "input").iterdir()) == []


def test_aborted_upload_leaves_no_temporary_file(server: tuple[str, Path]) -> None:
    base_url, runtime = server
    headers, session_id = _session(base_url)
    address = urlparse(base_url)
    with socket.create_connection((address.hostname, address.port)) as connection:
        request = (
            f"POST /api/sessions/{session_id}/files HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Length: {100 * MIB}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
        ).encode()
        connection.sendall(request)
        chunks = _multipart("cut.xml", 100 * MIB)
        for _ in range(6):
            connection.sendall(next(chunks))
        input_dir = runtime / "sessions" / session_id / "input"
        deadline = time.monotonic() + 30
        while not list(input_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for the server to open its part file
        assert list(input_dir.iterdir()), "the server never started writing"
    deadline = time.monotonic() + 30
    while list(input_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait for the server to notice the disconnect
    assert list(input_dir.iterdir()) == []
