"""The process pool for CPU-heavy task types (``@task(..., executor="process")``).

A slot thread of the worker hands the job to a child process and waits; the worker keeps renewing
the lease meanwhile. The child opens its own connection to the record store, so the task's
``ctx.progress`` and ``ctx.is_cancelled`` work as they do in a thread, and the same lease token
guards its writes. Children are started with ``spawn``: forking a process that runs threads can
copy a lock some other thread holds.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import sys
import threading
import types
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.core.config import Settings
from api.core.database import Database
from api.models.base import utc_now
from api.workers.context import JobContext
from api.workers.errors import JobFailed
from api.workers.leases import LeaseStore
from api.workers.records import ClaimedJob
from api.workers.registry import registry


@dataclass(frozen=True, slots=True)
class ChildJob:
    """Everything a child needs to run one job (pickled to it)."""

    claimed: ClaimedJob
    module: str
    database_url: str
    settings: Settings | None
    deadline: datetime | None


_leases: dict[str, LeaseStore] = {}
_heap_frozen = False


def run_in_child(job: ChildJob) -> Any:
    """Run ``job``'s task in this (child) process and return its result; exceptions travel back."""
    importlib.import_module(job.module)
    freeze_startup_heap()
    spec = registry.get(job.claimed.type)
    if spec is None:
        raise JobFailed(f"task {job.claimed.type!r} is not registered by module {job.module!r}")
    leases = _leases.get(job.database_url)
    if leases is None:
        leases = _leases[job.database_url] = LeaseStore(Database(job.database_url), utc_now)
    context = JobContext(job.claimed, leases, settings=job.settings, deadline=job.deadline)
    return spec.function(context, **job.claimed.args)


def freeze_startup_heap() -> None:
    """Once per child: move every object alive now (the imported application) out of the cyclic
    garbage collector's sight, as ``gc.freeze`` is meant for.

    Those objects live as long as the process, yet each full collection walked them all: in a
    conversion's coordinating process about 140,000 of them, 50-80 ms in the middle of a job of
    one second (``docs/performance.md``). Objects made later are collected as usual; frozen ones
    are still freed by reference counting.
    """
    global _heap_frozen
    if not _heap_frozen:
        gc.collect()
        gc.freeze()
        _heap_frozen = True


def forget_main() -> None:
    """Pool initializer: give the child an empty ``__main__``.

    ``spawn`` re-ran the parent's main script here as ``__mp_main__`` (for ``ret worker``: the
    console script, which imports the whole application). Every process this child starts in turn
    (a conversion's pool) would re-run it again unless ``__main__`` names no file: 1.5 s per pool
    process per job on a small machine. Nothing here runs code from ``__main__``: tasks are
    functions of ``api`` modules. (``set_forkserver_preload(["__main__"])`` should make this
    unnecessary, but in Python 3.11 the fork server never receives the main path.)
    """
    sys.modules["__main__"] = types.ModuleType("__main__")


class ProcessPool:
    """A ``ProcessPoolExecutor`` started on first use, replaced if a child dies."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, job: ChildJob) -> Future[Any]:
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(
                    self.max_workers, mp_context=context, initializer=forget_main
                )
            return self._executor.submit(run_in_child, job)

    def discard(self) -> None:
        """Drop a broken pool (a child was killed); the next job starts a new one."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.discard()
