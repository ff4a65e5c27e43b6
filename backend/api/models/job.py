"""The jobs table (both the queue and the record of every background job) and the periodic-run slots.

One row per job: what to run (``type`` + JSON ``args``), whose it is, where it stands (``state``,
``progress``), how it ended (``result`` or ``error_*``), and who holds it right now (the lease). See
docs/jobs.md for the life of a row; ``api.workers`` is the only code that writes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.models.base import Base, UTCDateTime

JOB_STATES: Final = ("queued", "running", "succeeded", "failed", "cancelled", "dead")
PENDING_STATES: Final = ("queued", "running")
TERMINAL_STATES: Final = ("succeeded", "failed", "cancelled", "dead")
# Partial-index predicates, the same text on SQLite and PostgreSQL. Queries that should use these
# indexes spell the state as a literal (``api.workers.leases.state_is``): a bound parameter would
# hide the value from SQLite's planner.
QUEUED_PREDICATE: Final = "state = 'queued'"
RUNNING_PREDICATE: Final = "state = 'running'"
PENDING_KEY_PREDICATE: Final = "state IN ('queued', 'running') AND dedupe_key IS NOT NULL"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead')", name="state"
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress"),
        # Why so few columns in indexes: every index entry a state change moves is a page the
        # commit writes, and a claim plus a finish per job is the queue's hot path. Indexes on
        # columns that never change (owner, session, creation time) cost only at insert; the
        # partial indexes hold queued or running jobs only, so they stay small.
        Index(
            "ix_jobs_running_lease",
            "lease_expires_at",
            sqlite_where=text(RUNNING_PREDICATE),
            postgresql_where=text(RUNNING_PREDICATE),
        ),
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_session", "session_id"),
        # Listing everyone's jobs newest first, and retention (finished before a cutoff implies
        # created before it).
        Index("ix_jobs_created_at", "created_at"),
        Index(
            "uq_jobs_pending_dedupe_key",
            "dedupe_key",
            unique=True,
            sqlite_where=text(PENDING_KEY_PREDICATE),
            postgresql_where=text(PENDING_KEY_PREDICATE),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    progress_message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # none_as_null: a job without a result stores SQL NULL, not the JSON text "null".
    result: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(36), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=false())
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PeriodicRun(Base):
    """One row per run of a periodic task: the primary key makes each (task, slot) run once."""

    __tablename__ = "periodic_runs"
    __table_args__ = (Index("ix_periodic_runs_claimed_at", "claimed_at"),)

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    # floor(epoch seconds / interval): the interval this run belongs to.
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    claimed_by: Mapped[str] = mapped_column(String(200))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Claiming: the next ready job of the highest priority, oldest first.
Index(
    "ix_jobs_ready",
    Job.priority.desc(),
    Job.run_after,
    sqlite_where=text(QUEUED_PREDICATE),
    postgresql_where=text(QUEUED_PREDICATE),
)
