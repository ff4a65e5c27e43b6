"""Plain, immutable snapshots of job rows: what the queue returns and what a worker holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from api.models import Job
from api.models.base import utc_now
from api.models.job import TERMINAL_STATES

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime; injected so tests move time by hand."""

DEFAULT_CLOCK: Clock = utc_now


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as stored (the lease token stays inside the worker side)."""

    id: str
    type: str
    state: str
    user_id: int | None
    session_id: str | None
    args: dict[str, Any]
    priority: int
    run_after: datetime
    attempts: int
    max_attempts: int
    timeout_seconds: float | None
    progress: int
    progress_message: str | None
    result: Any
    error_type: str | None
    error_message: str | None
    error_traceback: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    dedupe_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_model(cls, job: Job) -> JobRecord:
        return cls(**{name: getattr(job, name) for name in RECORD_FIELDS})


RECORD_FIELDS = tuple(field.name for field in fields(JobRecord))


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[JobRecord]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds: ``lease_token`` proves it, for every write until the job ends."""

    id: str
    type: str
    args: dict[str, Any]
    attempts: int
    max_attempts: int
    timeout_seconds: float | None
    session_id: str | None
    user_id: int | None
    lease_token: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one execution of a job ended, to be written while holding its lease.

    ``state`` is the job's next state: a final one, or ``queued`` again (a retry after a failed
    attempt, a release at shutdown).
    """

    state: str
    result: Any = None
    error: tuple[str, str, str | None] | None = None  # type name, message, traceback
    progress: int | None = None
    run_after: datetime | None = None
    refund_attempt: bool = False
