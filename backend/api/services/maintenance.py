"""Periodic housekeeping inside the API process (expired cache entries, idle buckets, idle
workspace sessions): each task runs on its own interval; a failing run is logged and retried at
the next interval, never fatal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    name: str
    interval_seconds: float
    run: Callable[[], int]  # returns how many things it removed, for the log


async def run_periodically(task: PeriodicTask) -> None:
    """Run ``task`` every interval (in a worker thread) until cancelled."""
    while True:
        await asyncio.sleep(task.interval_seconds)
        try:
            removed = await asyncio.to_thread(task.run)
        except Exception:
            logger.exception("%s failed; retrying in %.0f s", task.name, task.interval_seconds)
        else:
            if removed:
                logger.info("%s removed %d", task.name, removed)


@asynccontextmanager
async def running(tasks: Sequence[PeriodicTask]) -> AsyncIterator[None]:
    """Run every task in the background for the duration of the block."""
    handles = [asyncio.create_task(run_periodically(task), name=task.name) for task in tasks]
    try:
        yield
    finally:
        for handle in handles:
            handle.cancel()
        for handle in handles:
            with contextlib.suppress(asyncio.CancelledError):
                await handle
