"""SQL of the worker side of the jobs table: claim with a lease, renew it, report progress, finish
while holding it, and reap jobs whose worker stopped renewing.

The guarantee rests on one rule: every write a worker makes to a running job names the job *and*
the lease token it got when it claimed it (``WHERE id = :id AND lease_token = :token AND state =
'running'``). A worker whose lease expired and was reclaimed by another, or that released the job,
matches no row, so it can never overwrite the outcome.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``: inside ``BEGIN
IMMEDIATE`` on SQLite (the write lock serialises claimers), with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (claimers skip each other's rows instead of waiting). The reaper is ``api.workers.reaper``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final, cast

from sqlalchemy import ColumnElement, Integer, Table, bindparam, func, literal_column, select, update

from api.core.database import Database
from api.models import Job
from api.models.job import JOB_STATES
from api.workers.prepared import PreparedStatement, raw_transaction
from api.workers.records import ClaimedJob, Clock, Outcome

jobs = cast(Table, Job.__table__)
CLAIM_RETURNING: Final = (
    jobs.c.id,
    jobs.c.type,
    jobs.c.args,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.timeout_seconds,
    jobs.c.session_id,
    jobs.c.user_id,
)
CLAIM_NAMES: Final = tuple(column.name for column in CLAIM_RETURNING)


def state_is(state: str) -> ColumnElement[bool]:
    """``state = '<state>'`` with the value written into the SQL, not bound: SQLite's planner uses
    a partial index (``WHERE state = 'queued'``) only when it can see the value."""
    if state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r}")
    return jobs.c.state == literal_column(f"'{state}'")


def _held() -> ColumnElement[bool]:
    """The lease guard every write of a running job carries."""
    return (jobs.c.id == bindparam("id")) & (jobs.c.lease_token == bindparam("token")) & (state_is("running"))


class LeaseStore:
    """Worker-side statements on one record store; times come from ``clock``."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock
        self._dialect = database.engine.dialect
        self._claims: dict[tuple[str, ...], tuple[PreparedStatement, PreparedStatement]] = {}
        self._claim_one = self._prepare_claim(jobs.c.id == bindparam("job_id"), limit=False)
        self._progress = PreparedStatement(
            update(jobs)
            .where(_held())
            .values(progress=bindparam("progress"), progress_message=bindparam("message"))
            .returning(jobs.c.cancel_requested),
            self._dialect,
            returning=[jobs.c.cancel_requested],
        )
        self._flags = PreparedStatement(
            select(jobs.c.cancel_requested).where(_held()), self._dialect, returning=[jobs.c.cancel_requested]
        )
        self._finish = PreparedStatement(
            update(jobs)
            .where(_held())
            .values(
                state=bindparam("state"),
                result=bindparam("result", type_=jobs.c.result.type),
                error_type=bindparam("error_type"),
                error_message=bindparam("error_message"),
                error_traceback=bindparam("error_traceback"),
                progress=func.coalesce(bindparam("progress", type_=Integer), jobs.c.progress),
                finished_at=bindparam("finished_at", type_=jobs.c.finished_at.type),
                run_after=func.coalesce(
                    bindparam("run_after", type_=jobs.c.run_after.type), jobs.c.run_after
                ),
                attempts=jobs.c.attempts - bindparam("refund", type_=Integer),
                lease_token=None,
                lease_expires_at=None,
            ),
            self._dialect,
        )

    # -- claiming ----------------------------------------------------------------------------

    def claim(
        self, owner: str, task_types: Sequence[str], limit: int, lease_seconds: float
    ) -> list[ClaimedJob]:
        """Take up to ``limit`` ready jobs of ``task_types`` (highest priority, then oldest first)."""
        if not task_types or limit < 1:
            return []
        statement = self._claim_statements(tuple(task_types))[0]
        values = {**self._type_values(task_types), "limit": limit}
        return self._run_claim(statement, values, owner, lease_seconds)

    def claim_by_id(self, job_id: str, owner: str, lease_seconds: float) -> ClaimedJob | None:
        """Take job ``job_id`` if it is queued and due (a transport handed this worker its id)."""
        claimed = self._run_claim(self._claim_one, {"job_id": job_id}, owner, lease_seconds)
        return claimed[0] if claimed else None

    def has_ready(self, task_types: Sequence[str]) -> bool:
        """Whether a job of ``task_types`` is ready: a read, so idle polling never takes the write lock."""
        if not task_types:
            return False
        statement = self._claim_statements(tuple(task_types))[1]
        values = {**self._type_values(task_types), "now": self.clock()}
        with raw_transaction(self.database, write=False, one_statement=True) as cursor:
            return bool(statement.execute(cursor, values))

    def _run_claim(
        self, statement: PreparedStatement, values: dict[str, Any], owner: str, lease_seconds: float
    ) -> list[ClaimedJob]:
        with raw_transaction(self.database, write=True, one_statement=True) as cursor:
            return self._claim_in(cursor, statement, values, owner, lease_seconds)

    def _claim_in(
        self,
        cursor: Any,
        statement: PreparedStatement,
        values: dict[str, Any],
        owner: str,
        lease_seconds: float,
    ) -> list[ClaimedJob]:
        now = self.clock()
        token = uuid.uuid4().hex
        values |= {
            "now": now,
            "owner": owner,
            "token": token,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
        }
        rows = statement.execute(cursor, values)
        return [ClaimedJob(**dict(zip(CLAIM_NAMES, row, strict=True)), lease_token=token) for row in rows]

    def _claim_statements(self, task_types: tuple[str, ...]) -> tuple[PreparedStatement, PreparedStatement]:
        statements = self._claims.get(task_types)
        if statements is None:
            known = jobs.c.type.in_([bindparam(f"type_{index}") for index in range(len(task_types))])
            ready = select(jobs.c.id).where(known, *self._ready_conditions()).limit(1)
            statements = (
                self._prepare_claim(known, limit=True),
                PreparedStatement(ready, self._dialect, returning=[jobs.c.id]),
            )
            self._claims[task_types] = statements
        return statements

    def _prepare_claim(self, condition: ColumnElement[bool], *, limit: bool) -> PreparedStatement:
        ready = select(jobs.c.id).where(condition, *self._ready_conditions())
        if limit:
            ready = ready.order_by(jobs.c.priority.desc(), jobs.c.run_after).limit(bindparam("limit"))
        # PostgreSQL: lock the chosen rows, skipping rows another claimer has locked. SQLite
        # ignores the clause; its BEGIN IMMEDIATE already admits one claimer at a time. A CTE,
        # not ``id IN (subquery)``: PostgreSQL may run such a subquery once per outer row, and
        # then LIMIT no longer bounds how many rows the UPDATE takes.
        chosen = ready.with_for_update(skip_locked=True).cte("ready")
        statement = (
            update(jobs)
            .where(jobs.c.id == chosen.c.id, state_is("queued"))
            .values(
                state="running",
                attempts=jobs.c.attempts + 1,
                lease_owner=bindparam("owner"),
                lease_token=bindparam("token"),
                lease_expires_at=bindparam("lease_expires_at", type_=jobs.c.lease_expires_at.type),
                started_at=bindparam("now", type_=jobs.c.started_at.type),
                progress=0,
                progress_message=None,
            )
            .returning(*CLAIM_RETURNING)
        )
        return PreparedStatement(statement, self._dialect, returning=CLAIM_RETURNING)

    @staticmethod
    def _ready_conditions() -> list[ColumnElement[bool]]:
        return [state_is("queued"), jobs.c.run_after <= bindparam("now", type_=jobs.c.run_after.type)]

    @staticmethod
    def _type_values(task_types: Sequence[str]) -> dict[str, str]:
        return {f"type_{index}": name for index, name in enumerate(task_types)}

    # -- while running -----------------------------------------------------------------------

    def report_progress(self, job_id: str, token: str, percent: int, message: str | None) -> bool | None:
        """Store progress; return whether cancellation was requested, or None if the lease is lost."""
        values = {"id": job_id, "token": token, "progress": percent, "message": message}
        with raw_transaction(self.database, write=True, one_statement=True) as cursor:
            rows = self._progress.execute(cursor, values)
        return bool(rows[0][0]) if rows else None

    def cancel_requested(self, job_id: str, token: str) -> bool | None:
        """Whether cancellation was requested, or None if the lease is lost (a read)."""
        with raw_transaction(self.database, write=False, one_statement=True) as cursor:
            rows = self._flags.execute(cursor, {"id": job_id, "token": token})
        return bool(rows[0][0]) if rows else None

    def cancelled_among(self, job_ids: Sequence[str]) -> set[str]:
        """Which of ``job_ids`` have cancellation requested (a read)."""
        query = select(jobs.c.id).where(jobs.c.id.in_(list(job_ids)), jobs.c.cancel_requested.is_(True))
        with self.database.session() as session:
            return set(session.scalars(query))

    def renew(self, held: Mapping[str, str], lease_seconds: float) -> dict[str, bool]:
        """Extend the leases of ``held`` (job id → token); return, for each job still held, whether
        cancellation was requested. A job missing from the answer is no longer this worker's."""
        if not held:
            return {}
        statement = (
            update(jobs)
            .where(
                state_is("running"),
                jobs.c.id.in_(list(held)),
                jobs.c.lease_token.in_(set(held.values())),
            )
            .values(lease_expires_at=self.clock() + timedelta(seconds=lease_seconds))
            .returning(jobs.c.id, jobs.c.cancel_requested)
        )
        with self.database.session(write=True) as session:
            return {row.id: bool(row.cancel_requested) for row in session.execute(statement)}

    # -- ending ------------------------------------------------------------------------------

    def finish(self, job_id: str, token: str, outcome: Outcome) -> bool:
        """Write ``outcome`` to a held job and drop the lease; False if this worker no longer holds
        the job (nothing is written then)."""
        with raw_transaction(self.database, write=True, one_statement=True) as cursor:
            return self._finish.rowcount(cursor, self._outcome_values(job_id, token, outcome)) == 1

    def finish_then_claim(
        self,
        job_id: str,
        token: str,
        outcome: Outcome,
        owner: str,
        task_types: Sequence[str],
        lease_seconds: float,
    ) -> tuple[bool, ClaimedJob | None]:
        """``finish``, then claim the next ready job, in one transaction: a busy worker pays one
        commit per job instead of two."""
        statement = self._claim_statements(tuple(task_types))[0]
        values = {**self._type_values(task_types), "limit": 1}
        with raw_transaction(self.database, write=True) as cursor:
            written = self._finish.rowcount(cursor, self._outcome_values(job_id, token, outcome)) == 1
            claimed = self._claim_in(cursor, statement, values, owner, lease_seconds)
        return written, claimed[0] if claimed else None

    def _outcome_values(self, job_id: str, token: str, outcome: Outcome) -> dict[str, Any]:
        error_type, error_message, error_traceback = outcome.error or (None, None, None)
        return {
            "id": job_id,
            "token": token,
            "state": outcome.state,
            "result": outcome.result,
            "error_type": error_type,
            "error_message": error_message,
            "error_traceback": error_traceback,
            "progress": outcome.progress,
            "finished_at": None if outcome.state == "queued" else self.clock(),
            "run_after": outcome.run_after,
            "refund": 1 if outcome.refund_attempt else 0,
        }
