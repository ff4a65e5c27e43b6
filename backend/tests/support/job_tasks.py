"""Tasks the job tests submit. Worker processes import this module through JOBS_TASK_MODULES."""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

from api.workers.context import JobContext
from api.workers.errors import JobFailed
from api.workers.registry import periodic, task

# In-process gates: a task waits on one until the test opens it (event-based, no timing).
_GATES: dict[str, threading.Event] = {}
_GATES_LOCK = threading.Lock()
POLL = 0.01  # how often a waiting task looks again


def gate(name: str) -> threading.Event:
    with _GATES_LOCK:
        return _GATES.setdefault(name, threading.Event())


def _append(path: Path, line: str) -> None:
    # One O_APPEND write per line: lines from several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@task("tests.wait")
def wait(ctx: JobContext, gate_name: str, report: bool = True) -> dict[str, Any]:
    """Report progress until the gate opens (so cancellation and timeouts are noticed)."""
    step = 0
    while not gate(gate_name).wait(POLL):
        if report:
            step = (step + 1) % 100
            ctx.progress(step, f"waiting for {gate_name}")
    return {"released": gate_name}


@task("tests.silent_wait")
def silent_wait(ctx: JobContext, gate_name: str) -> str:
    """Wait for the gate without ever reporting progress."""
    gate(gate_name).wait()
    return "done"


@task("tests.fail", max_attempts=3)
def fail(ctx: JobContext) -> None:
    raise RuntimeError(f"poison on attempt {ctx.attempt}")


@task("tests.flaky")
def flaky(ctx: JobContext, failures: int) -> int:
    if ctx.attempt <= failures:
        raise ConnectionError(f"glitch on attempt {ctx.attempt}")
    return ctx.attempt


@task("tests.reject")
def reject(ctx: JobContext) -> None:
    raise JobFailed("the input is not a deposit")


@task("tests.not_json")
def not_json(ctx: JobContext) -> object:
    return {1, 2}


@task("tests.echo")
def echo(ctx: JobContext, value: Any = None, *, required: int = 0) -> dict[str, Any]:
    return {"value": value, "required": required, "attempt": ctx.attempt}


@task("tests.cpu", executor="process")
def cpu(ctx: JobContext, n: int) -> dict[str, int]:
    ctx.progress(50, "half way")
    return {"pid": os.getpid(), "sum": sum(range(n))}


@task("tests.gc_state", executor="process")
def gc_state(ctx: JobContext) -> dict[str, int]:
    return {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}


@task("tests.start_process", executor="process")
def start_process(ctx: JobContext) -> dict[str, int | None]:
    """Start (and join) one process from the job's child, as a conversion's pool does."""
    process = multiprocessing.get_context("spawn").Process(target=os.getpid)
    process.start()
    process.join()
    return {"exitcode": process.exitcode}


@task("tests.record", max_attempts=50)
def record(ctx: JobContext, log: str, seconds: float) -> dict[str, int]:
    """Log each execution (job, pid, attempt), then work for ``seconds`` with progress reports."""
    _append(Path(log), f"{ctx.job_id} {os.getpid()} {ctx.attempt}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.progress(min(99, 100 * (1 - (deadline - time.monotonic()) / seconds)))
        time.sleep(POLL)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@task("tests.count")
def count(ctx: JobContext, directory: str) -> None:
    _append(Path(directory) / f"{os.getpid()}.log", ctx.job_id)


@task("tests.hold")
def hold(ctx: JobContext, directory: str) -> dict[str, int]:
    """Across processes: mark the start, then (first attempt only) wait for a ``release`` file."""
    folder = Path(directory)
    _append(folder / f"started-{ctx.job_id}", f"{os.getpid()} {ctx.attempt}")
    while ctx.attempt == 1 and not (folder / "release").exists():
        time.sleep(POLL)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@periodic("tests.tick", interval_seconds=0.25)
def tick() -> None:
    """Log a line per run when RET_TEST_TICK_LOG names a file (the scheduler test sets it)."""
    path = os.environ.get("RET_TEST_TICK_LOG")
    if path:
        _append(Path(path), f"{os.getpid()} {time.time():.3f}")
