"""Benchmark the job queue (issue 6) against Huey (SqliteHuey) and Celery (Redis broker).

Run from ``backend/``::

    .venv/bin/python benchmarks/bench_jobs.py [--quick] [--skip-peers] [--json PATH]

Prints the machine, then:

1. Enqueue: the latency of one submit (the job stored, no worker running): median, p90, p99 and
   mean of single calls, the systems taking turns every 100 calls.
2. Throughput: the jobs just enqueued are run by two worker processes of each system in turn
   (``ret worker --processes 2``; Huey's consumer with two process workers; ``celery worker
   --concurrency 2``); jobs/s from the first task's start to the last one's.
3. Idle pickup: with the workers idle, one job at a time; the time from submit to the task running.
   Ours is measured across processes (the workers poll) and inside the submitting process (woken).
4. The time an HTTP request is held for a 1-second job: v3's Celery ``task_always_eager`` against
   ours (the request returns once the job is stored; the job finishes later).
5. The issue's targets with PASS/FAIL.

Every system keeps its defaults (Huey's idle consumer backs off from 0.1 s to 10 s between polls).
A report, not a test: it exits 0 whatever it finds; a peer that cannot run shows as "unavailable".
Everything lives in a temporary directory; Celery's Redis keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import job_peers
from fastapi import APIRouter, status
from fastapi.testclient import TestClient
from harness import machine_description

from api.core.config import Settings
from api.deps import JobQueueDep
from api.main import create_app

BENCH_DIR = Path(__file__).resolve().parent
BACKEND_DIR = BENCH_DIR.parent
OURS, HUEY, CELERY = "ours (SQLite)", "Huey SqliteHuey", "Celery + Redis"


@dataclass(frozen=True)
class Sizes:
    name: str
    enqueue_calls: int  # per system; these jobs are then the throughput backlog
    pickup_rounds: int
    http_rounds: int


FULL = Sizes("full", enqueue_calls=3000, pickup_rounds=40, http_rounds=3)
QUICK = Sizes("quick", enqueue_calls=100, pickup_rounds=4, http_rounds=1)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the systems ------------------------------------------------------------------------------------


class System:
    """One job system: submit a stamp job, run two workers, collect the stamps."""

    name = ""

    def submit(self) -> Any:
        raise NotImplementedError

    def workers(self) -> list[str]:
        """The command that runs two worker processes."""
        raise NotImplementedError

    def stamps(self, handles: Sequence[Any], timeout: float) -> list[float]:
        """Wait for the jobs behind ``handles``; return when each ran (epoch seconds)."""
        raise NotImplementedError

    def close(self) -> None:
        """Remove what the run left (queues, keys)."""


class Ours(System):
    name = OURS

    def __init__(self, workdir: Path) -> None:
        from api.core.database import Database
        from api.workers.queue import JobQueue

        self.url = f"sqlite:///{workdir / 'ours' / 'ret.db'}"
        self.database = Database(self.url)
        self.database.upgrade()
        self.queue = JobQueue(self.database)
        self.env = {
            **os.environ,
            "ENV": "testing",
            "RET_RUNTIME_ROOT": str(workdir / "ours"),
            "RET_SESSION_DB": str(workdir / "ours" / "session.db"),
            "DATABASE_URL": self.url,
            "JWT_SECRET_KEY": "bench-" + "k" * 40,
            "JOBS_TASK_MODULES": '["job_peers"]',
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
            "LOG_LEVEL": "WARNING",
        }

    def submit(self) -> Any:
        from job_peers import OURS_STAMP

        return self.queue.submit(OURS_STAMP).id

    def workers(self) -> list[str]:
        return [sys.executable, "-m", "api", "worker", "--processes", "2"]

    def stamps(self, handles: Sequence[Any], timeout: float) -> list[float]:
        wanted = set(handles)
        deadline = time.monotonic() + timeout
        while self.queue.list(states=["queued", "running"], limit=1).total:
            if time.monotonic() > deadline:
                raise TimeoutError("our workers did not drain the queue in time")
            time.sleep(0.01)
        found = []
        for offset in range(0, 10**9, 500):
            page = self.queue.list(offset=offset, limit=500, task_type="bench.stamp")
            found += [job.result for job in page.items if job.id in wanted]
            if len(page.items) < 500:
                return found
        return found

    def close(self) -> None:
        self.database.dispose()


class HueyPeer(System):
    name = HUEY

    def __init__(self, workdir: Path) -> None:
        os.environ["BENCH_HUEY_DB"] = str(workdir / "huey.db")
        import job_peers

        self.huey = job_peers.huey_app()

    def submit(self) -> Any:
        return self.huey.bench_stamp()

    def workers(self) -> list[str]:
        # Imported as ``job_peers``, not run as ``__main__``: Huey names tasks after their module.
        return [sys.executable, "-c", "import job_peers; job_peers.run_huey()"]

    def stamps(self, handles: Sequence[Any], timeout: float) -> list[float]:
        return [handle.get(blocking=True, timeout=timeout) for handle in handles]


class CeleryPeer(System):
    name = CELERY

    def __init__(self, redis_url: str) -> None:
        import redis

        self.queue_name = f"ret-bench-{uuid.uuid4().hex[:8]}"
        os.environ.update(BENCH_CELERY_URL=redis_url, BENCH_CELERY_QUEUE=self.queue_name)
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.redis.ping()
        import job_peers

        self.app = job_peers.celery_app()
        self.ids: list[str] = []

    def submit(self) -> Any:
        result = self.app.send_task("bench.celery_stamp")
        self.ids.append(result.id)
        return result

    def workers(self) -> list[str]:
        return [sys.executable, "-c", "import job_peers; job_peers.run_celery()"]

    def stamps(self, handles: Sequence[Any], timeout: float) -> list[float]:
        return [handle.get(timeout=timeout) for handle in handles]

    def close(self) -> None:
        keys = [f"celery-task-meta-{task_id}" for task_id in self.ids]
        keys += list(self.redis.scan_iter(f"*{self.queue_name}*"))
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start : start + 1000])
        self.redis.close()


@contextmanager
def running(command: list[str], env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a worker fleet (and its children) for the block; SIGTERM it afterwards."""
    process = subprocess.Popen(command, cwd=BACKEND_DIR, env=env, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the measurements -----------------------------------------------------------------------------------


def measure_enqueue(
    systems: Sequence[System], calls: int, block: int = 100
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Time single submits with the garbage collector off, the systems taking turns every ``block``
    calls (load from elsewhere hits all alike; one system's disk flushes and cache misses stay out
    of another's calls); return each system's latencies in µs and the jobs it queued."""
    handles: dict[str, list[Any]] = {system.name: [] for system in systems}
    latencies: dict[str, list[float]] = {system.name: [] for system in systems}
    for system in systems:  # warm-up: connections, statement caches
        handles[system.name] += [system.submit() for _ in range(20)]
    gc.collect()
    gc.disable()
    try:
        for _ in range(calls // block):
            for system in systems:
                for _ in range(block):
                    started = time.perf_counter_ns()
                    handle = system.submit()
                    latencies[system.name].append((time.perf_counter_ns() - started) / 1000)
                    handles[system.name].append(handle)
    finally:
        gc.enable()
    return {name: summarize_us(values) for name, values in latencies.items()}, handles


def summarize_us(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_us": round(statistics.median(ordered), 1),
        "p90_us": round(ordered[int(0.9 * len(ordered))], 1),
        "p99_us": round(ordered[int(0.99 * len(ordered))], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
        "calls": len(ordered),
    }


def measure_throughput_and_pickup(system: System, backlog: list[Any], rounds: int) -> dict[str, Any]:
    """Start the system's two workers on ``backlog``; then time ``rounds`` single idle pickups."""
    rng = random.Random(6)
    env = getattr(system, "env", None) or {**os.environ, "PYTHONPATH": str(BENCH_DIR)}
    with running(system.workers(), env):
        stamps = system.stamps(backlog, timeout=120)
        pickups = []
        for _ in range(rounds):
            time.sleep(rng.uniform(0.1, 0.3))  # let the workers go idle
            submitted = time.time()
            pickups.append(system.stamps([system.submit()], timeout=60)[0] - submitted)
    span = max(stamps) - min(stamps)
    return {
        "jobs": len(stamps),
        "jobs_per_second": (len(stamps) - 1) / span if span > 0 else None,
        "pickup_ms": sorted(1000 * value for value in pickups),
    }


def measure_in_process_pickup(workdir: Path, rounds: int) -> list[float]:
    """Ours inside the submitting process: the local wake-up, no polling."""
    from job_peers import OURS_STAMP

    from api.core.database import Database
    from api.workers.queue import JobQueue
    from api.workers.registry import registry
    from api.workers.transport import LocalWakeup
    from api.workers.worker import Worker
    from api.workers.worker_config import WorkerConfig

    database = Database(f"sqlite:///{workdir / 'in-process.db'}")
    database.upgrade()
    transport = LocalWakeup()
    queue = JobQueue(database, transport=transport)
    worker = Worker(database, registry, WorkerConfig(concurrency=2))
    transport.subscribe(worker.wake)
    worker.start()
    pickups = []
    try:
        for _ in range(rounds):
            time.sleep(0.1)
            submitted = time.time()
            job = queue.submit(OURS_STAMP)
            while not (record := queue.get(job.id)).is_terminal:
                # Mostly asleep: a busy poller would hold the GIL the workers' threads need.
                time.sleep(0.01)
            pickups.append(1000 * (record.result - submitted))
    finally:
        worker.stop()
        database.dispose()
    return sorted(pickups)


def measure_http_hold(workdir: Path, rounds: int, job_seconds: float = 1.0) -> dict[str, list[float]]:
    """v3 (Celery eager: the task runs inside the request) against ours, through the whole app."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="testing",
        ret_runtime_root=workdir / "app",
        ret_session_db=workdir / "app" / "session.db",
        database_url=f"sqlite:///{workdir / 'app' / 'ret.db'}",
        jwt_secret_key="bench-" + "k" * 40,
        rate_limit_enabled=False,
        log_level="WARNING",
    )
    eager_sleep = job_peers.eager_app().tasks["bench.eager_sleep"]
    probe = APIRouter()

    @probe.post("/bench/v3-eager")
    def v3_eager() -> dict[str, float]:
        return {"finished": eager_sleep.delay(job_seconds).get()}

    @probe.post("/bench/ours", status_code=status.HTTP_202_ACCEPTED)
    def ours(jobs: JobQueueDep) -> dict[str, str]:
        return {"id": jobs.submit(job_peers.OURS_SLEEP, {"seconds": job_seconds}).id}

    app = create_app(settings)
    app.include_router(probe)
    held: dict[str, list[float]] = {"eager": [], "ours": [], "ours_job_done": []}
    with TestClient(app) as client:
        queue = client.app.state.resources.jobs  # type: ignore[attr-defined]
        for _ in range(rounds):
            started = time.perf_counter()
            client.post("/bench/v3-eager")
            held["eager"].append(time.perf_counter() - started)
            started = time.perf_counter()
            job_id = client.post("/bench/ours").json()["id"]
            held["ours"].append(time.perf_counter() - started)
            while not queue.get(job_id).is_terminal:
                time.sleep(0.005)
            held["ours_job_done"].append(time.perf_counter() - started)
    return held


# -- main -----------------------------------------------------------------------------------------------


def open_systems(args: argparse.Namespace, workdir: Path) -> tuple[list[System], dict[str, str]]:
    systems: list[System] = [Ours(workdir)]
    unavailable: dict[str, str] = {}
    if args.skip_peers:
        unavailable.update({HUEY: "skipped (--skip-peers)", CELERY: "skipped (--skip-peers)"})
    else:
        for name, factory in (
            (HUEY, lambda: HueyPeer(workdir)),
            (CELERY, lambda: CeleryPeer(args.redis_url)),
        ):
            try:
                systems.append(factory())
            except Exception as exc:
                unavailable[name] = f"unavailable: {type(exc).__name__}: {exc}"
    return systems, unavailable


def run(args: argparse.Namespace, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    import report_jobs

    machine = machine_description()
    report_jobs.print_header(machine, sizes.name)
    systems, unavailable = open_systems(args, workdir)
    try:
        log(f"enqueue: {sizes.enqueue_calls:,} single submits per system, in turns of 100")
        enqueue, handles = measure_enqueue(systems, sizes.enqueue_calls)
        runs: dict[str, Any] = {}
        for system in systems:
            log(f"throughput and pickup: {system.name}, {len(handles[system.name]):,} jobs queued")
            try:
                runs[system.name] = measure_throughput_and_pickup(
                    system, handles[system.name], sizes.pickup_rounds
                )
            except Exception as exc:
                unavailable[system.name] = f"failed: {type(exc).__name__}: {exc}"
        log("pickup inside the submitting process")
        in_process = measure_in_process_pickup(workdir, sizes.pickup_rounds)
        log("HTTP request held for a 1-second job")
        http = measure_http_hold(workdir, sizes.http_rounds)
    finally:
        for system in systems:
            system.close()
    results = {
        "machine": machine,
        "run": sizes.name,
        "enqueue": enqueue,
        "workers": runs,
        "in_process_pickup_ms": in_process,
        "http_held_seconds": http,
        "unavailable": unavailable,
    }
    results["targets"] = report_jobs.evaluate_targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--skip-peers", action="store_true", help="measure ours only (no Huey, no Celery)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="Celery's broker")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ret-bench-jobs-") as workdir:
        results = run(args, QUICK if args.quick else FULL, Path(workdir))
    import report_jobs

    report_jobs.print_report(results)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
