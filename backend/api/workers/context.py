"""The ``ctx`` a task receives: who it is, and how it reports progress and notices cancellation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from api.core.config import Settings
from api.workers.errors import JobCancelled, JobTimeout, LeaseLost
from api.workers.leases import LeaseStore
from api.workers.records import ClaimedJob

# A report that does not change the whole percentage is stored at most this often; every stored
# report also reads the cancellation flag. (Conversion reports once per file: thousands a second.)
PROGRESS_WRITE_INTERVAL_SECONDS: Final = 0.5
MAX_MESSAGE_LENGTH: Final = 500


class JobContext:
    """Handed to a task as its first argument.

    Attributes: ``job_id``, ``attempt`` (1 on the first run), ``max_attempts``, ``session_id``,
    ``user_id``, and ``settings`` (the process's settings, for tasks that need paths or limits).
    """

    def __init__(
        self,
        claimed: ClaimedJob,
        leases: LeaseStore,
        *,
        settings: Settings | None = None,
        deadline: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = claimed.id
        self.attempt = claimed.attempts
        self.max_attempts = claimed.max_attempts
        self.session_id = claimed.session_id
        self.user_id = claimed.user_id
        self.settings = settings
        self.deadline = deadline
        self._token = claimed.lease_token
        self._leases = leases
        self._monotonic = monotonic
        self._cancel_requested = False
        self._lost = False
        self._timed_out = False
        self._ended_by_worker = False
        self._stored_percent: int | None = None
        self._stored_at = -math.inf

    @property
    def cancel_requested(self) -> bool:
        """Whether cancellation was requested, as last seen (no database read)."""
        return self._cancel_requested

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report how far the job is (0–100) and what it is doing; stop here if it must stop.

        Raises:
            JobCancelled: cancellation was requested; let it propagate (the job ends ``cancelled``).
            JobTimeout: the job ran past its timeout.
            LeaseLost: this worker no longer holds the job.
            ValueError: ``percent`` is not within 0–100.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"progress must be within 0 and 100, not {percent!r}")
        self.check()
        whole = int(percent)
        now = self._monotonic()
        if whole != self._stored_percent or now - self._stored_at >= PROGRESS_WRITE_INTERVAL_SECONDS:
            text = message[:MAX_MESSAGE_LENGTH] if message is not None else None
            self._note(self._leases.report_progress(self.job_id, self._token, whole, text))
            self._stored_percent, self._stored_at = whole, now
            self.check()

    def is_cancelled(self) -> bool:
        """Whether cancellation was requested (reads the job; for tasks that stop on their own)."""
        if not self._cancel_requested and not self._lost:
            self._note(self._leases.cancel_requested(self.job_id, self._token))
        return self._cancel_requested

    def check(self) -> None:
        """Raise if the job must stop (lease lost, cancelled, past its deadline); no database access."""
        if self._lost:
            raise LeaseLost(f"job {self.job_id}: this worker no longer holds it")
        if self._cancel_requested:
            raise JobCancelled(f"job {self.job_id} was cancelled")
        if self._timed_out or (self.deadline is not None and self._leases.clock() >= self.deadline):
            self._timed_out = True
            raise JobTimeout(f"job {self.job_id} ran past its timeout")

    # -- what the worker's monitor learns ----------------------------------------------------

    def note_cancel_requested(self) -> None:
        self._cancel_requested = True

    def note_lost(self) -> None:
        self._lost = True

    def note_ended_by_worker(self) -> None:
        """The worker ended the job itself (it ran past its timeout): stop at the next report."""
        self._timed_out = True
        self._ended_by_worker = True

    @property
    def ended_by_worker(self) -> bool:
        return self._ended_by_worker

    @property
    def lost(self) -> bool:
        return self._lost

    def _note(self, cancel_requested: bool | None) -> None:
        if cancel_requested is None:
            self._lost = True
        elif cancel_requested:
            self._cancel_requested = True
