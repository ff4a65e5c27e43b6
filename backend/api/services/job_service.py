"""Jobs as users see them: their own (admins: anyone's), listed, read, cancelled, and watched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from typing import Final

from api.services.auth_service import Principal
from api.workers.errors import JobNotFoundError
from api.workers.queue import JobQueue
from api.workers.records import JobPage, JobRecord

WATCH_POLL_SECONDS: Final = 0.25
KEEPALIVE_SECONDS: Final = 15.0


class JobService:
    def __init__(
        self,
        queue: JobQueue,
        *,
        poll_seconds: float = WATCH_POLL_SECONDS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._queue = queue
        self._poll_seconds = poll_seconds
        self._keepalive_seconds = keepalive_seconds

    def list_jobs(
        self,
        user: Principal,
        *,
        session_id: str | None = None,
        states: Collection[str] = (),
        offset: int = 0,
        limit: int = 50,
    ) -> JobPage:
        """The caller's own jobs, newest first."""
        return self._queue.list(
            user_id=user.user_id, session_id=session_id, states=states, offset=offset, limit=limit
        )

    def get_job(self, user: Principal, job_id: str) -> JobRecord:
        """A job the caller owns, or any job for an admin.

        Raises:
            JobNotFoundError: missing, or someone else's (the two look the same).
        """
        record = self._queue.get(job_id)
        if record.user_id != user.user_id and not user.is_admin:
            raise JobNotFoundError(f"job {job_id} not found")
        return record

    def cancel_job(self, user: Principal, job_id: str) -> JobRecord:
        """Cancel a job the caller may see (see ``JobQueue.cancel``)."""
        self.get_job(user, job_id)
        return self._queue.cancel(job_id)

    def watch_job(self, user: Principal, job_id: str) -> AsyncIterator[JobRecord | None]:
        """The job now, then each time its state or progress changes, until it ends; ``None`` now
        and then while nothing changes (a keep-alive). Access is checked here, before streaming."""
        first = self.get_job(user, job_id)
        return self._watch(first)

    async def _watch(self, record: JobRecord) -> AsyncIterator[JobRecord | None]:
        yield record
        quiet = 0.0
        while not record.is_terminal:
            await asyncio.sleep(self._poll_seconds)
            try:
                latest = await asyncio.to_thread(self._queue.get, record.id)
            except JobNotFoundError:  # pruned while watched
                return
            if _visible_change(record, latest):
                record, quiet = latest, 0.0
                yield record
            else:
                quiet += self._poll_seconds
                if quiet >= self._keepalive_seconds:
                    quiet = 0.0
                    yield None


def _visible_change(before: JobRecord, after: JobRecord) -> bool:
    return _visible(before) != _visible(after)


def _visible(record: JobRecord) -> tuple[object, ...]:
    return (record.state, record.progress, record.progress_message, record.attempts, record.cancel_requested)
