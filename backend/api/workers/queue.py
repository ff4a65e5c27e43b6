"""The queue API: submit jobs, read them, list them, cancel and retry them, prune old ones.

``submit`` validates everything first (the task name, JSON keyword arguments that fit the task, the
options) and stores nothing when something is wrong; then it inserts one row and returns at once.
Workers (``api.workers.worker``) do the rest. DESIGN.md §8, docs/jobs.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from api.core.config import Settings
from api.core.database import Database
from api.models.job import JOB_STATES
from api.workers.errors import InvalidJobError, JobNotFoundError, JobStateError, UnknownTaskError
from api.workers.job_store import JobConstraintError, JobStore
from api.workers.json_values import json_problem
from api.workers.records import DEFAULT_CLOCK, Clock, JobPage, JobRecord
from api.workers.registry import TaskRegistry, TaskSpec, registry
from api.workers.transport import JobTransport, LocalWakeup

MAX_ATTEMPTS_LIMIT: Final = 100
PRIORITY_LIMIT: Final = 1000
MAX_KEY_LENGTH: Final = 200
MAX_SESSION_ID_LENGTH: Final = 64
MAX_PAGE: Final = 500


@dataclass(frozen=True, slots=True)
class QueueDefaults:
    max_attempts: int = 3
    retention_days: float = 7.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueDefaults:
        return cls(settings.jobs_max_attempts, settings.jobs_retention_days)


class JobQueue:
    """Submits and manages jobs in one record store."""

    def __init__(
        self,
        database: Database,
        tasks: TaskRegistry = registry,
        *,
        defaults: QueueDefaults | None = None,
        clock: Clock = DEFAULT_CLOCK,
        transport: JobTransport | None = None,
    ) -> None:
        self.registry = tasks
        self.defaults = defaults or QueueDefaults()
        self.clock = clock
        self.transport: JobTransport = transport or LocalWakeup()
        self._store = JobStore(database)

    def submit(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        user_id: int | None = None,
        session_id: str | None = None,
        dedupe_key: str | None = None,
        priority: int = 0,
        delay_seconds: float = 0.0,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
    ) -> JobRecord:
        """Queue task ``task`` with keyword arguments ``args``; return the job (already queued).

        With ``dedupe_key``, while a queued or running job holds the same key, nothing is stored and
        that job is returned instead. Higher ``priority`` runs first; ``delay_seconds`` postpones.

        Raises:
            UnknownTaskError: no task is registered as ``task``.
            InvalidJobError: ``args`` are not JSON or do not fit the task; an option is out of range.
        """
        spec = self._task(task)
        arguments = _check_arguments(spec, args)
        _check_options(priority, delay_seconds, max_attempts, timeout_seconds, dedupe_key, session_id)
        now = self.clock()
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "type": task,
            "user_id": user_id,
            "session_id": session_id,
            "args": arguments,
            "state": "queued",
            "priority": priority,
            "run_after": now + timedelta(seconds=delay_seconds),
            "attempts": 0,
            "max_attempts": max_attempts or spec.max_attempts or self.defaults.max_attempts,
            "timeout_seconds": timeout_seconds or spec.timeout_seconds,
            "progress": 0,
            "cancel_requested": False,
            "dedupe_key": dedupe_key,
            "created_at": now,
        }
        try:
            existing = self._store.insert(values)
        except JobConstraintError as exc:
            raise InvalidJobError(f"job not stored: {exc}") from None
        if existing is not None:
            return self.get(existing)
        self.transport.publish(values["id"])
        return JobRecord(**values, **_NEW_JOB_FIELDS)

    def get(self, job_id: str) -> JobRecord:
        """Raises: JobNotFoundError."""
        record = self._store.get(job_id)
        if record is None:
            raise JobNotFoundError(f"job {job_id} not found")
        return record

    def list(
        self,
        *,
        user_id: int | None = None,
        session_id: str | None = None,
        states: Collection[str] = (),
        task_type: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> JobPage:
        """Jobs matching every given filter, newest first (at most ``MAX_PAGE`` per page)."""
        if unknown := set(states) - set(JOB_STATES):
            raise InvalidJobError(f"unknown job states {sorted(unknown)}; states are {list(JOB_STATES)}")
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise InvalidJobError(f"offset must be ≥ 0 and limit within 1 and {MAX_PAGE}")
        return self._store.list_page(
            user_id=user_id,
            session_id=session_id,
            states=states,
            task_type=task_type,
            offset=offset,
            limit=limit,
        )

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a queued one never starts; a running one stops at its next progress report.
        Cancelling a cancelled job again is a no-op.

        Raises:
            JobNotFoundError; JobStateError: the job already ended otherwise.
        """
        outcome = self._store.cancel(job_id, self.clock())
        if outcome is None:
            raise JobNotFoundError(f"job {job_id} not found")
        before, record = outcome
        if before in ("succeeded", "failed", "dead"):
            raise JobStateError(f"job {job_id} already ended ({before}); there is nothing to cancel")
        return record

    def cancel_for_session(self, session_id: str) -> int:
        """Cancel every queued and running job of workspace session ``session_id`` (its cleanup);
        return how many jobs this changed."""
        return self._store.cancel_for_session(session_id, self.clock())

    def retry(self, job_id: str) -> JobRecord:
        """Queue a failed, dead or cancelled job again, attempts from zero.

        Raises:
            JobNotFoundError; JobStateError: the job is pending or succeeded, or another pending
            job holds its dedupe key.
        """
        outcome, record = self._store.retry(job_id, self.clock())
        if outcome == "not_found" or record is None:
            raise JobNotFoundError(f"job {job_id} not found")
        if outcome == "wrong_state":
            raise JobStateError(f"job {job_id} is {record.state}; only failed, dead or cancelled jobs retry")
        if outcome == "duplicate":
            raise JobStateError(f"another pending job holds dedupe key {record.dedupe_key!r}")
        self.transport.publish(job_id)
        return record

    def prune(self, older_than_days: float | None = None) -> int:
        """Delete jobs that finished more than ``older_than_days`` (``JOBS_RETENTION_DAYS``) ago,
        and periodic-run records as old; return how many jobs were deleted."""
        days = self.defaults.retention_days if older_than_days is None else older_than_days
        cutoff = self.clock() - timedelta(days=days)
        self._store.prune_slots(cutoff)
        return self._store.prune(cutoff)

    def forget(self, job_id: str) -> bool:
        """Delete one finished job now; False if it is missing or not finished."""
        return self._store.delete_finished(job_id)

    def _task(self, name: str) -> TaskSpec:
        spec = self.registry.get(name)
        if spec is None:
            known = ", ".join(self.registry.names()) or "none"
            raise UnknownTaskError(f"unknown task {name!r} (registered tasks: {known})")
        return spec


_NEW_JOB_FIELDS: Final[dict[str, Any]] = {
    "progress_message": None,
    "result": None,
    "error_type": None,
    "error_message": None,
    "error_traceback": None,
    "lease_owner": None,
    "lease_expires_at": None,
    "started_at": None,
    "finished_at": None,
}


def _check_arguments(spec: TaskSpec, args: Mapping[str, Any] | None) -> dict[str, Any]:
    if args is not None and not isinstance(args, Mapping):
        raise InvalidJobError(f"arguments of task {spec.name!r} must be a JSON object of keyword arguments")
    arguments = dict(args or {})
    if (problem := json_problem(arguments)) is not None:
        raise InvalidJobError(f"arguments of task {spec.name!r} are not JSON: {problem}")
    try:
        spec.check_arguments(arguments)
    except TypeError as exc:
        raise InvalidJobError(f"arguments do not fit task {spec.name!r}: {exc}") from None
    return arguments


def _check_options(
    priority: int,
    delay_seconds: float,
    max_attempts: int | None,
    timeout_seconds: float | None,
    dedupe_key: str | None,
    session_id: str | None,
) -> None:
    problems = []
    if not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
        problems.append(f"priority must be within ±{PRIORITY_LIMIT}")
    if not 0 <= delay_seconds < 366 * 86400:
        problems.append("delay_seconds must be ≥ 0 and under a year")
    if max_attempts is not None and not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        problems.append(f"max_attempts must be within 1 and {MAX_ATTEMPTS_LIMIT}")
    if timeout_seconds is not None and not 0 < timeout_seconds < 366 * 86400:
        problems.append("timeout_seconds must be positive and under a year")
    if dedupe_key is not None and not 0 < len(dedupe_key) <= MAX_KEY_LENGTH:
        problems.append(f"dedupe_key must be 1-{MAX_KEY_LENGTH} characters")
    if session_id is not None and not 0 < len(session_id) <= MAX_SESSION_ID_LENGTH:
        problems.append(f"session_id must be 1-{MAX_SESSION_ID_LENGTH} characters")
    if problems:
        raise InvalidJobError("; ".join(problems))
