"""The queue API: submit (validation, dedupe), get, list, cancel, retry, prune."""

from __future__ import annotations

import math
import threading

import pytest
import sqlalchemy as sa

from api.core.database import Database
from api.workers.errors import InvalidJobError, JobNotFoundError, JobStateError, UnknownTaskError
from api.workers.leases import LeaseStore
from api.workers.queue import JobQueue
from api.workers.records import Outcome
from tests.support.jobs import FakeUtcClock, make_user


def _stored(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(sa.text("SELECT COUNT(*) FROM jobs")) or 0)


def _finish(queue: JobQueue, database: Database, clock: FakeUtcClock, job_id: str, state: str) -> None:
    leases = LeaseStore(database, clock)
    claimed = leases.claim_by_id(job_id, "test", 30)
    assert claimed is not None
    assert leases.finish(claimed.id, claimed.lease_token, Outcome(state, error=("E", "e", None)))


def test_submit_returns_a_queued_job_with_its_arguments(queue: JobQueue) -> None:
    job = queue.submit("tests.echo", {"value": [1, "two"]}, session_id="s1", priority=5)
    stored = queue.get(job.id)
    assert (stored.state, stored.args, stored.session_id, stored.priority) == (
        "queued",
        {"value": [1, "two"]},
        "s1",
        5,
    )
    assert stored == job


def test_submit_takes_max_attempts_from_the_task_then_the_queue_default(queue: JobQueue) -> None:
    assert queue.submit("tests.fail").max_attempts == 3  # @task(max_attempts=3)
    assert queue.submit("tests.echo").max_attempts == queue.defaults.max_attempts
    assert queue.submit("tests.echo", max_attempts=9).max_attempts == 9


def test_unknown_task_raises_and_stores_nothing(queue: JobQueue, database: Database) -> None:
    with pytest.raises(UnknownTaskError, match=r"unknown task 'tests\.nope'"):
        queue.submit("tests.nope", {})
    assert _stored(database) == 0


@pytest.mark.parametrize(
    "args",
    [{"value": {1, 2}}, {"value": b"bytes"}, {"value": math.nan}, {"value": (1, 2)}, {"value": {1: "x"}}],
    ids=["set", "bytes", "nan", "tuple", "int-key"],
)
def test_non_json_arguments_raise_and_store_nothing(queue: JobQueue, database: Database, args: dict) -> None:
    with pytest.raises(InvalidJobError, match="not JSON"):
        queue.submit("tests.echo", args)
    assert _stored(database) == 0


def test_arguments_the_task_does_not_take_raise(queue: JobQueue, database: Database) -> None:
    with pytest.raises(InvalidJobError, match="unexpected keyword argument 'colour'"):
        queue.submit("tests.echo", {"colour": "red"})
    with pytest.raises(InvalidJobError, match="missing a required argument: 'failures'"):
        queue.submit("tests.flaky", {})
    assert _stored(database) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"priority": 5000},
        {"timeout_seconds": -1},
        {"timeout_seconds": math.inf},
        {"delay_seconds": -1},
        {"dedupe_key": ""},
    ],
)
def test_out_of_range_options_raise(queue: JobQueue, database: Database, options: dict) -> None:
    with pytest.raises(InvalidJobError):
        queue.submit("tests.echo", **options)
    assert _stored(database) == 0


def test_an_owner_that_does_not_exist_raises_invalid_job(queue: JobQueue, database: Database) -> None:
    with pytest.raises(InvalidJobError, match="not stored"):
        queue.submit("tests.echo", user_id=999_999)
    assert _stored(database) == 0


def test_dedupe_key_returns_the_pending_job_instead_of_a_new_one(queue: JobQueue, database: Database) -> None:
    first = queue.submit("tests.echo", {"value": 1}, dedupe_key="convert:s1")
    second = queue.submit("tests.echo", {"value": 2}, dedupe_key="convert:s1")
    assert second.id == first.id
    assert second.args == {"value": 1}
    assert _stored(database) == 1


def test_dedupe_key_is_free_again_once_the_job_ended(queue: JobQueue) -> None:
    first = queue.submit("tests.echo", dedupe_key="k")
    queue.cancel(first.id)
    assert queue.submit("tests.echo", dedupe_key="k").id != first.id


def test_concurrent_submits_with_one_dedupe_key_store_one_job(queue: JobQueue, database: Database) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        barrier.wait()
        ids.append(queue.submit("tests.echo", dedupe_key="race").id)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert _stored(database) == 1


def test_submit_publishes_the_job_to_the_transport(database: Database, clock: FakeUtcClock) -> None:
    published: list[str] = []

    class Recorder:
        def publish(self, job_id: str) -> None:
            published.append(job_id)

    job = JobQueue(database, clock=clock, transport=Recorder()).submit("tests.echo")
    assert published == [job.id]


def test_get_of_a_missing_job_raises_not_found(queue: JobQueue) -> None:
    with pytest.raises(JobNotFoundError):
        queue.get("00000000-0000-0000-0000-000000000000")


def test_list_filters_by_owner_session_and_state_newest_first(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    alice, bob = make_user(database, "alice"), make_user(database, "bob")
    older = queue.submit("tests.echo", user_id=alice, session_id="s1")
    clock.advance(1)
    newer = queue.submit("tests.echo", user_id=alice, session_id="s1")
    queue.submit("tests.echo", user_id=alice, session_id="s2")
    queue.submit("tests.echo", user_id=bob, session_id="s1")
    queue.cancel(older.id)
    page = queue.list(user_id=alice, session_id="s1")
    assert [job.id for job in page.items] == [newer.id, older.id]
    assert [job.id for job in queue.list(user_id=alice, session_id="s1", states=["cancelled"]).items] == [
        older.id
    ]


def test_list_pages_with_offset_limit_and_total(queue: JobQueue, clock: FakeUtcClock) -> None:
    ids = []
    for _ in range(5):
        ids.append(queue.submit("tests.echo").id)
        clock.advance(1)
    page = queue.list(offset=1, limit=2)
    assert (page.total, [job.id for job in page.items]) == (5, [ids[3], ids[2]])


def test_list_rejects_an_unknown_state(queue: JobQueue) -> None:
    with pytest.raises(InvalidJobError, match="unknown job states"):
        queue.list(states=["done"])


def test_cancelling_a_queued_job_ends_it_at_once(queue: JobQueue, clock: FakeUtcClock) -> None:
    job = queue.cancel(queue.submit("tests.echo").id)
    assert (job.state, job.cancel_requested, job.finished_at) == ("cancelled", True, clock())


def test_cancelling_a_cancelled_job_again_is_a_no_op(queue: JobQueue) -> None:
    job = queue.submit("tests.echo")
    queue.cancel(job.id)
    assert queue.cancel(job.id).state == "cancelled"


def test_cancelling_a_finished_job_is_a_conflict(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    job = queue.submit("tests.echo")
    _finish(queue, database, clock, job.id, "succeeded")
    with pytest.raises(JobStateError, match="already ended"):
        queue.cancel(job.id)


def test_cancel_for_session_cancels_queued_jobs_and_flags_running_ones(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    queued = queue.submit("tests.echo", session_id="s1")
    running = queue.submit("tests.echo", session_id="s1")
    other = queue.submit("tests.echo", session_id="s2")
    assert LeaseStore(database, clock).claim_by_id(running.id, "test", 30) is not None
    assert queue.cancel_for_session("s1") == 2
    assert queue.get(queued.id).state == "cancelled"
    assert (queue.get(running.id).state, queue.get(running.id).cancel_requested) == ("running", True)
    assert queue.get(other.id).state == "queued"


def test_retry_requeues_a_dead_job_from_scratch(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    job = queue.submit("tests.echo")
    _finish(queue, database, clock, job.id, "dead")
    retried = queue.retry(job.id)
    assert (retried.state, retried.attempts, retried.error_type, retried.finished_at) == (
        "queued",
        0,
        None,
        None,
    )


def test_retrying_a_pending_job_is_a_conflict(queue: JobQueue) -> None:
    with pytest.raises(JobStateError, match="only failed, dead or cancelled"):
        queue.retry(queue.submit("tests.echo").id)


def test_retry_refuses_when_another_pending_job_holds_the_dedupe_key(queue: JobQueue) -> None:
    first = queue.submit("tests.echo", dedupe_key="k")
    queue.cancel(first.id)
    queue.submit("tests.echo", dedupe_key="k")
    with pytest.raises(JobStateError, match="dedupe key"):
        queue.retry(first.id)


def test_prune_deletes_jobs_finished_before_the_retention_period(
    queue: JobQueue, database: Database, clock: FakeUtcClock
) -> None:
    old = queue.submit("tests.echo")
    queue.cancel(old.id)
    clock.advance(3 * 86400)
    recent = queue.submit("tests.echo")
    queue.cancel(recent.id)
    pending = queue.submit("tests.echo")
    clock.advance(5 * 86400)
    assert queue.prune(older_than_days=7) == 1
    assert {job.id for job in queue.list().items} == {recent.id, pending.id}
