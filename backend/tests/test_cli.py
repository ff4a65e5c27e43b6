"""``ret serve`` as ``make run`` starts it: a real uvicorn process answering health and docs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import BACKEND_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)  # polling a starting subprocess, not waiting for time to pass
    raise AssertionError("server did not start in time")


@pytest.mark.slow
def test_ret_serve_answers_health_and_docs(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RET_")}
    env.update(ENV="development", RET_RUNTIME_ROOT=str(tmp_path / "runtime"))
    env["RET_SESSION_DB"] = str(tmp_path / "runtime" / "ret_session.db")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'runtime' / 'ret.db'}"
    command = [sys.executable, "-m", "api", "serve", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(command, cwd=BACKEND_DIR, env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base + "/api/health", process, time.monotonic() + 90)
        assert httpx.get(base + "/api/health").json() == {"status": "ok"}
        assert httpx.get(base + "/docs").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
