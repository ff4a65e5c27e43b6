"""How a submitted job reaches a worker: the executor boundary (see ``celery_app`` for the choice).

The jobs table is always the queue's truth. A transport only tells workers that a job is ready,
sooner than their poll would find it; losing a notice delays a job by one poll, never loses it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class JobTransport(Protocol):
    def publish(self, job_id: str) -> None:
        """Job ``job_id`` was just committed as queued (submitted, retried): hand it on. Must not
        raise for a delivery problem; workers find the job by polling anyway."""


class LocalWakeup:
    """The default transport: wakes the workers of this process; other processes poll."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def publish(self, job_id: str) -> None:
        for listener in list(self._listeners):
            listener()
