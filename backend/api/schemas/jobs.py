"""Response models of the jobs routes (lease internals and tracebacks stay server-side)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from api.workers.records import JobPage, JobRecord

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "dead"]


class JobErrorPublic(BaseModel):
    type: str
    message: str


class JobPublic(BaseModel):
    id: str
    type: str
    state: JobState
    progress: int
    progress_message: str | None
    result: Any
    error: JobErrorPublic | None
    args: dict[str, Any]
    user_id: int | None
    session_id: str | None
    attempts: int
    max_attempts: int
    priority: int
    cancel_requested: bool
    created_at: datetime
    run_after: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, record: JobRecord) -> JobPublic:
        error = None
        if record.error_type is not None:
            error = JobErrorPublic(type=record.error_type, message=record.error_message or "")
        return cls(
            id=record.id,
            type=record.type,
            state=record.state,
            progress=record.progress,
            progress_message=record.progress_message,
            result=record.result,
            error=error,
            args=record.args,
            user_id=record.user_id,
            session_id=record.session_id,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            priority=record.priority,
            cancel_requested=record.cancel_requested,
            created_at=record.created_at,
            run_after=record.run_after,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )


class JobPagePublic(BaseModel):
    items: list[JobPublic]
    total: int
    offset: int
    limit: int

    @classmethod
    def of(cls, page: JobPage) -> JobPagePublic:
        return cls(
            items=[JobPublic.of(record) for record in page.items],
            total=page.total,
            offset=page.offset,
            limit=page.limit,
        )
