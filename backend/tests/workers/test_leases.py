"""The lease rules at the SQL level: bounded claims, and writes only while holding the lease."""

from __future__ import annotations

from api.core.database import Database
from api.workers.leases import LeaseStore
from api.workers.queue import JobQueue
from api.workers.records import Outcome
from tests.support.jobs import FakeUtcClock


def test_a_claim_takes_at_most_its_limit(queue: JobQueue, database: Database, clock: FakeUtcClock) -> None:
    for _ in range(5):
        queue.submit("tests.echo")
    claimed = LeaseStore(database, clock).claim("w", ["tests.echo"], limit=2, lease_seconds=30)
    assert len(claimed) == 2
    assert queue.list(states=["running"]).total == 2


def test_a_claim_skips_other_types_and_jobs_not_yet_due(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    queue.submit("tests.echo", delay_seconds=10)
    queue.submit("tests.fail")
    leases = LeaseStore(database, clock)
    assert leases.claim("w", ["tests.echo"], limit=5, lease_seconds=30) == []
    assert not leases.has_ready(["tests.echo"])
    clock.advance(10)
    assert leases.has_ready(["tests.echo"])


def test_each_claim_gets_a_new_token_and_counts_an_attempt(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    job = queue.submit("tests.echo")
    leases = LeaseStore(database, clock)
    first = leases.claim_by_id(job.id, "a", 30)
    assert first is not None
    assert leases.finish(first.id, first.lease_token, Outcome("queued"))
    second = leases.claim_by_id(job.id, "b", 30)
    assert second is not None
    assert (second.attempts, second.lease_token != first.lease_token) == (2, True)


def test_progress_and_finish_need_the_current_token(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    job = queue.submit("tests.echo")
    leases = LeaseStore(database, clock)
    claimed = leases.claim_by_id(job.id, "a", 30)
    assert claimed is not None
    assert leases.report_progress(job.id, "not-the-token", 50, "x") is None
    assert not leases.finish(job.id, "not-the-token", Outcome("succeeded"))
    assert leases.report_progress(job.id, claimed.lease_token, 50, "half") is False
    assert leases.finish(job.id, claimed.lease_token, Outcome("succeeded", result={"ok": True}, progress=100))
    assert not leases.finish(job.id, claimed.lease_token, Outcome("failed"))  # finished once, for good
    assert queue.get(job.id).result == {"ok": True}


def test_renewal_reports_cancellation_and_forgets_lost_jobs(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    kept, cancelled, lost = (queue.submit("tests.echo") for _ in range(3))
    leases = LeaseStore(database, clock)
    held = {}
    for job in (kept, cancelled, lost):
        claimed = leases.claim_by_id(job.id, "a", 30)
        assert claimed is not None
        held[job.id] = claimed.lease_token
    queue.cancel(cancelled.id)
    leases.finish(lost.id, held[lost.id], Outcome("queued"))  # e.g. released; its token is gone
    assert leases.renew(held, 30) == {kept.id: False, cancelled.id: True}


def test_finishing_can_claim_the_next_job_in_the_same_transaction(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    first, second = queue.submit("tests.echo"), queue.submit("tests.echo", priority=-1)
    leases = LeaseStore(database, clock)
    claimed = leases.claim_by_id(first.id, "a", 30)
    assert claimed is not None
    written, following = leases.finish_then_claim(
        first.id, claimed.lease_token, Outcome("succeeded"), "a", ["tests.echo"], 30
    )
    assert written
    assert following is not None
    assert following.id == second.id
    assert (queue.get(first.id).state, queue.get(second.id).state) == ("succeeded", "running")
