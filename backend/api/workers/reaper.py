"""The reaper: jobs whose worker stopped renewing their lease (it died, hung or lost the database)
are queued again, the attempt counted, or end ``dead`` once they used ``max_attempts``.

Every worker runs it every half lease; it is idempotent, so several reapers at once are harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import select, update

from api.core.database import Database
from api.workers.leases import jobs, state_is
from api.workers.records import Clock

REAP_BATCH: Final = 100


@dataclass(frozen=True, slots=True)
class ReapReport:
    requeued: int = 0
    dead: int = 0
    cancelled: int = 0


def has_expired(database: Database, clock: Clock) -> bool:
    """Whether any running job's lease ran out (a read, so an idle reaper takes no write lock)."""
    query = select(jobs.c.id).where(state_is("running"), jobs.c.lease_expires_at < clock())
    with database.session() as session:
        return session.execute(query.limit(1)).first() is not None


def reap(database: Database, clock: Clock, retry_delay: Callable[[int], float]) -> ReapReport:
    """Requeue running jobs whose lease ran out (``retry_delay(attempts)`` seconds from now), or end
    them ``dead`` once they used ``max_attempts`` (``cancelled`` if cancellation was requested)."""
    now = clock()
    expired = (
        select(jobs.c.id, jobs.c.attempts, jobs.c.max_attempts, jobs.c.cancel_requested, jobs.c.lease_owner)
        .where(state_is("running"), jobs.c.lease_expires_at < now)
        .limit(REAP_BATCH)
        .with_for_update(skip_locked=True)
    )
    counts = {"queued": 0, "dead": 0, "cancelled": 0}
    with database.session(write=True) as session:
        for row in session.execute(expired).all():
            message = (
                f"worker {row.lease_owner} stopped renewing its lease (it died, hung or lost the "
                f"database) during attempt {row.attempts} of {row.max_attempts}"
            )
            values: dict[str, Any] = {
                "lease_token": None,
                "lease_expires_at": None,
                "error_type": "WorkerLost",
                "error_message": message,
                "error_traceback": None,
            }
            if row.cancel_requested:
                values |= {"state": "cancelled", "finished_at": now}
            elif row.attempts >= row.max_attempts:
                values |= {"state": "dead", "finished_at": now}
            else:
                values |= {"state": "queued", "run_after": now + timedelta(seconds=retry_delay(row.attempts))}
            session.execute(update(jobs).where(jobs.c.id == row.id, state_is("running")).values(values))
            counts[values["state"]] += 1
    return ReapReport(counts["queued"], counts["dead"], counts["cancelled"])
