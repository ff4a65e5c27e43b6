"""SQL of the queue side of the jobs table (submit, read, list, cancel, retry, prune) and of the
periodic-run slots. The worker side (claim, lease, finish) is ``api.workers.leases``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Final, Literal, cast

from sqlalchemy import ColumnElement, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from api.core.database import Database
from api.models import Job, PeriodicRun
from api.workers.leases import state_is
from api.workers.prepared import PreparedStatement, raw_transaction
from api.workers.records import JobPage, JobRecord

jobs = cast(Table, Job.__table__)
INSERT_COLUMNS: Final = (
    "id",
    "type",
    "user_id",
    "session_id",
    "args",
    "state",
    "priority",
    "run_after",
    "attempts",
    "max_attempts",
    "timeout_seconds",
    "progress",
    "cancel_requested",
    "dedupe_key",
    "created_at",
)
RETRYABLE_STATES: Final = ("failed", "dead", "cancelled")
PRUNE_BATCH: Final = 1000

RetryOutcome = Literal["requeued", "not_found", "wrong_state", "duplicate"]


class JobConstraintError(ValueError):
    """A new job broke a constraint of the table (e.g. its user does not exist)."""


def pending() -> ColumnElement[bool]:
    """``state`` is queued or running, as literals (the partial dedupe index's predicate)."""
    return or_(state_is("queued"), state_is("running"))


class JobStore:
    """Queue-side statements on one record store."""

    def __init__(self, database: Database) -> None:
        self._database = database
        dialect = database.engine.dialect
        self._integrity_error: type[Exception] = dialect.loaded_dbapi.IntegrityError
        values = {name: bindparam(name, type_=jobs.c[name].type) for name in INSERT_COLUMNS}
        self._insert = PreparedStatement(insert(jobs).values(values), dialect)
        self._pending_id = PreparedStatement(
            select(jobs.c.id).where(jobs.c.dedupe_key == bindparam("dedupe_key"), pending()),
            dialect,
            returning=[jobs.c.id],
        )

    # -- submit ------------------------------------------------------------------------------

    def insert(self, values: dict[str, Any]) -> str | None:
        """Store a new job. If ``values["dedupe_key"]`` is held by a pending job, store nothing and
        return that job's id.

        Raises:
            JobConstraintError: the row breaks a constraint (a user that does not exist).
        """
        key = values["dedupe_key"]
        try:
            with raw_transaction(self._database, write=True, one_statement=key is None) as cursor:
                if key is not None and (rows := self._pending_id.execute(cursor, {"dedupe_key": key})):
                    return str(rows[0][0])
                self._insert.execute(cursor, values)
                return None
        except self._integrity_error as exc:
            # PostgreSQL: another submit with the same key committed first (the partial unique
            # index caught it). SQLite cannot race here: BEGIN IMMEDIATE serialises submits.
            existing = self.pending_id(key) if key is not None else None
            if existing is None:
                raise JobConstraintError(str(exc).splitlines()[0]) from None
            return existing

    def pending_id(self, dedupe_key: str) -> str | None:
        with raw_transaction(self._database, write=False, one_statement=True) as cursor:
            rows = self._pending_id.execute(cursor, {"dedupe_key": dedupe_key})
        return str(rows[0][0]) if rows else None

    # -- reads -------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        with self._database.session() as session:
            job = session.get(Job, job_id)
            return JobRecord.from_model(job) if job is not None else None

    def list_page(
        self,
        *,
        user_id: int | None = None,
        session_id: str | None = None,
        states: Collection[str] = (),
        task_type: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> JobPage:
        """Jobs matching every given filter, newest first, and how many match in all."""
        conditions: list[ColumnElement[bool]] = []
        if user_id is not None:
            conditions.append(Job.user_id == user_id)
        if session_id is not None:
            conditions.append(Job.session_id == session_id)
        if states:
            conditions.append(Job.state.in_(list(states)))
        if task_type is not None:
            conditions.append(Job.type == task_type)
        query = select(Job).where(*conditions).order_by(Job.created_at.desc(), Job.id)
        with self._database.session() as session:
            total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
            rows = session.scalars(query.offset(offset).limit(limit)).all()
            items = [JobRecord.from_model(job) for job in rows]
        return JobPage(items, total, offset, limit)

    # -- control -----------------------------------------------------------------------------

    def cancel(self, job_id: str, now: datetime) -> tuple[str, JobRecord] | None:
        """Cancel a queued job at once, flag a running one; return its state before, and after."""
        with self._database.session(write=True) as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None:
                return None
            before = job.state
            if before == "queued":
                job.state, job.finished_at = "cancelled", now
            if before in ("queued", "running"):
                job.cancel_requested = True
            session.flush()
            return before, JobRecord.from_model(job)

    def cancel_for_session(self, session_id: str, now: datetime) -> int:
        """Cancel the session's queued jobs and flag its running ones; return how many changed."""
        of_session = jobs.c.session_id == session_id
        with self._database.session(write=True) as session:
            queued = session.execute(
                update(jobs)
                .where(of_session, state_is("queued"))
                .values(state="cancelled", cancel_requested=True, finished_at=now)
            )
            running = session.execute(
                update(jobs)
                .where(of_session, state_is("running"), jobs.c.cancel_requested.is_(False))
                .values(cancel_requested=True)
            )
        return int(queued.rowcount) + int(running.rowcount)  # type: ignore[attr-defined]

    def retry(self, job_id: str, now: datetime) -> tuple[RetryOutcome, JobRecord | None]:
        """Queue a failed, dead or cancelled job again from scratch (attempts back to 0)."""
        try:
            with self._database.session(write=True) as session:
                job = session.get(Job, job_id, with_for_update=True)
                if job is None:
                    return "not_found", None
                if job.state not in RETRYABLE_STATES:
                    return "wrong_state", JobRecord.from_model(job)
                _reset(job, now)
                session.flush()
                return "requeued", JobRecord.from_model(job)
        except IntegrityError:
            # The partial unique index: a pending job already holds this job's dedupe key.
            return "duplicate", self.get(job_id)

    def delete_finished(self, job_id: str) -> bool:
        """Forget one finished job (the validation check cleans up after itself)."""
        with self._database.session(write=True) as session:
            result = session.execute(delete(jobs).where(jobs.c.id == job_id, jobs.c.finished_at.is_not(None)))
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def prune(self, finished_before: datetime) -> int:
        """Delete finished jobs older than ``finished_before``, in batches (short write locks)."""
        # created_at bounds the scan (its index); a job finished before the cutoff was created before it.
        old = (jobs.c.created_at < finished_before) & (jobs.c.finished_at < finished_before)
        batch = select(jobs.c.id).where(old).limit(PRUNE_BATCH)
        removed = 0
        while True:
            with self._database.session(write=True) as session:
                result = session.execute(delete(jobs).where(jobs.c.id.in_(batch.scalar_subquery())))
            count = int(result.rowcount)  # type: ignore[attr-defined]
            removed += count
            if count < PRUNE_BATCH:
                return removed

    # -- periodic-run slots ------------------------------------------------------------------

    def claim_slot(self, name: str, slot: int, owner: str, now: datetime) -> bool:
        """Record that ``owner`` runs ``name`` for ``slot``; False if another process already does."""
        try:
            with self._database.session(write=True) as session:
                session.add(PeriodicRun(name=name, slot=slot, claimed_by=owner, claimed_at=now))
        except IntegrityError:
            return False
        return True

    def prune_slots(self, claimed_before: datetime) -> int:
        with self._database.session(write=True) as session:
            result = session.execute(delete(PeriodicRun).where(PeriodicRun.claimed_at < claimed_before))
        return int(result.rowcount)  # type: ignore[attr-defined]


def _reset(job: Job, now: datetime) -> None:
    job.state, job.run_after, job.attempts = "queued", now, 0
    job.progress, job.progress_message, job.result = 0, None, None
    job.error_type = job.error_message = job.error_traceback = None
    job.cancel_requested = False
    job.lease_owner = job.lease_token = None
    job.lease_expires_at = job.started_at = job.finished_at = None
