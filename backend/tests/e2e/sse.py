"""Reading a Server-Sent Events stream of job frames to its end, within a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx2 as httpx

# The server sends a keep-alive comment every 15 s while a job is quiet: a longer silence is a hang.
READ_TIMEOUT_SECONDS = 20.0


def frames(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of each frame; comments (keep-alives) are skipped."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))


def follow_job(client: httpx.Client, job_id: str, deadline_seconds: float) -> list[dict[str, Any]]:
    """Every job frame of ``GET /api/jobs/{job_id}/events`` until the server ends the stream."""
    deadline = time.monotonic() + deadline_seconds
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_SECONDS)
    jobs: list[dict[str, Any]] = []
    with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in frames(response.iter_lines()):
            assert event == "job", (event, data)
            jobs.append(json.loads(data))
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still streaming after {deadline_seconds} s: {jobs[-1]}")
    return jobs
