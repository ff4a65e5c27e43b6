"""A real ``ret serve`` process on a free port, for tests that need several worker processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx

from tests.conftest import BACKEND_DIR, TEST_SECRET

START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(root: Path, **overrides: str) -> dict[str, str]:
    """The environment of a test server: isolated runtime root, cheap hashing, no rate limits."""
    names = ("RET_", "SESSION_CACHE", "DATABASE_URL", "JWT_", "RATE_LIMIT", "ENV", "LOG_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(names)}
    env.update(
        ENV="testing",
        RET_RUNTIME_ROOT=str(root / "runtime"),
        RET_SESSION_DB=str(root / "runtime" / "ret_session.db"),
        DATABASE_URL=f"sqlite:///{root / 'runtime' / 'ret.db'}",
        JWT_SECRET_KEY=TEST_SECRET,
        PASSWORD_HASH_TIME_COST="1",
        PASSWORD_HASH_MEMORY_KIB="1024",
        RATE_LIMIT_ENABLED="false",
        LOG_LEVEL="WARNING",
    )
    env.update(overrides)
    return env


def run_cli(args: list[str], env: Mapping[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api", *args],
        cwd=BACKEND_DIR,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@contextmanager
def running_server(env: Mapping[str, str], workers: int = 1) -> Iterator[str]:
    """Start ``ret serve --workers N``; yield its base URL once every worker answers; stop it."""
    port = free_port()
    command = [sys.executable, "-m", "api", "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(command, cwd=BACKEND_DIR, env=dict(env), stdout=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base_url, process)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with status {process.returncode}")
        try:
            if httpx.get(base_url + "/api/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a starting subprocess, not letting time pass for the test
    raise AssertionError("server did not become ready in time")
