"""Background jobs: the caller's own (admins may read and cancel anyone's; others get 404)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import CurrentUser, JobServiceDep
from api.schemas.jobs import JobPagePublic, JobPublic, JobState
from api.workers.records import JobRecord

router = APIRouter(prefix="/jobs", tags=["jobs"])

Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=500)]
EVENTS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}
}


@router.get("")
def list_jobs(
    user: CurrentUser,
    jobs: JobServiceDep,
    session_id: str | None = None,
    state: Annotated[list[JobState] | None, Query()] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> JobPagePublic:
    """The caller's jobs, newest first; filter by workspace session and state (repeatable)."""
    page = jobs.list_jobs(user, session_id=session_id, states=state or (), offset=offset, limit=limit)
    return JobPagePublic.of(page)


@router.get("/{job_id}")
def get_job(job_id: str, user: CurrentUser, jobs: JobServiceDep) -> JobPublic:
    """One job: state, progress, result or error."""
    return JobPublic.of(jobs.get_job(user, job_id))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, user: CurrentUser, jobs: JobServiceDep) -> JobPublic:
    """Cancel a job: a queued job never starts, a running one stops at its next progress report."""
    return JobPublic.of(jobs.cancel_job(user, job_id))


@router.get("/{job_id}/events", response_class=StreamingResponse, responses=EVENTS_RESPONSE)
def job_events(job_id: str, user: CurrentUser, jobs: JobServiceDep) -> StreamingResponse:
    """Server-Sent Events: an ``event: job`` frame with the job now and at every change of state or
    progress; the stream ends after the frame with a final state (close the EventSource then)."""
    stream = jobs.watch_job(user, job_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_frames(stream), media_type="text/event-stream", headers=headers)


async def _frames(stream: AsyncIterator[JobRecord | None]) -> AsyncIterator[str]:
    async for record in stream:
        if record is None:
            yield ": keep-alive\n\n"
        else:
            yield f"event: job\ndata: {JobPublic.of(record).model_dump_json()}\n\n"
