"""Several processes incrementing shared counters at once: throughput, lost increments, errors.

Each process (spawned, not forked: see ``run_contest``) opens its own store, waits at a barrier for
the others, then runs its increments round-robin over the counters; the throughput is every
increment over the time from the first start to the last finish (``perf_counter_ns`` is
CLOCK_MONOTONIC, one clock for all processes).
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cache_peers import RawSQLite, open_session_cache

WORKER_TIMEOUT_SECONDS = 300.0
Report = tuple[int, int, int, str]  # start ns, end ns, errors, first error


def open_incrementer(kind: str, path: Path) -> tuple[Callable[[str], object], Callable[[], None]]:
    """``incr`` and ``close`` of a SessionCache (``kind="SessionCache"``) or of the raw SQLite floor."""
    if kind == "SessionCache":
        cache = open_session_cache(path)
        return cache.incr, cache.close
    raw = RawSQLite(path)
    return raw.incr, raw.connection.close


def counter_total(kind: str, path: Path, counters: list[str]) -> int:
    """The sum of the counters, read back through the same kind of store."""
    if kind == "SessionCache":
        reader = open_session_cache(path, 0)
        try:
            return sum(reader.get_many(counters).values())
        finally:
            reader.close()
    raw = RawSQLite(path)
    try:
        marks = ", ".join("?" for _ in counters)
        sql = f"SELECT COALESCE(SUM(value), 0) FROM session_cache WHERE key IN ({marks})"
        total: int = raw.connection.execute(sql, counters).fetchone()[0]
        return total
    finally:
        raw.connection.close()


def worker(kind: str, path: Path, counters: list[str], operations: int, barrier: Any, results: Any) -> None:
    try:
        report = _increment(kind, path, counters, operations, barrier)
    except Exception as exc:  # reported, not raised: the parent counts it as lost work
        barrier.abort()  # the others stop waiting for this one (they report BrokenBarrierError)
        report = (0, 0, operations, f"{type(exc).__name__}: {exc}")
    results.put(report)


def _increment(kind: str, path: Path, counters: list[str], operations: int, barrier: Any) -> Report:
    incr, close = open_incrementer(kind, path)
    incr("warm-up")  # opens the connection (and generation table) before the clock starts
    barrier.wait(timeout=WORKER_TIMEOUT_SECONDS)
    errors, first_error = 0, ""
    start = time.perf_counter_ns()
    for index in range(operations):
        try:
            incr(counters[index % len(counters)])
        except Exception as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
    end = time.perf_counter_ns()
    close()
    return start, end, errors, first_error


def run_contest(kind: str, path: Path, processes: int, operations: int, counters: int) -> dict[str, Any]:
    """``processes`` processes × ``operations`` increments on ``counters`` shared counters in ``path``."""
    # Spawned: a forked child of this benchmark process, which has used every store by now, hung
    # before the barrier about one quick run in five (a fresh interpreter never did).
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    names = [f"counter:{index:03d}" for index in range(counters)]
    args = (kind, path, names, operations, barrier, results)
    workers = [context.Process(target=worker, args=args) for _ in range(processes)]
    for process in workers:
        process.start()
    reports: list[Report] = []
    try:
        for _ in workers:
            reports.append(results.get(timeout=WORKER_TIMEOUT_SECONDS))
    except queue.Empty:
        reports.extend((0, 0, operations, "no report") for _ in range(processes - len(reports)))
    for process in workers:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    return summary(processes * operations, counter_total(kind, path, names), reports)


def summary(increments: int, total: int, reports: list[Report]) -> dict[str, Any]:
    """Throughput, and ``lost``: increments acknowledged (returned without error) but not counted."""
    errors = sum(report[2] for report in reports)
    ran = [(start, end) for start, end, _, _ in reports if end]
    seconds = (max(end for _, end in ran) - min(start for start, _ in ran)) / 1e9 if ran else 0.0
    return {
        "increments": increments,
        "seconds": round(seconds, 3),
        "ops_per_second": round(increments / seconds) if seconds else 0,
        "lost": increments - errors - total,
        "errors": errors,
        "first_error": next((report[3] for report in reports if report[3]), ""),
    }
