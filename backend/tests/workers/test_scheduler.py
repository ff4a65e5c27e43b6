"""The periodic scheduler: one run per interval across schedulers, on the injected clock."""

from __future__ import annotations

import logging

import pytest

from api.core.database import Database
from api.workers.registry import PeriodicEntry
from api.workers.scheduler import Scheduler
from tests.support.jobs import FakeUtcClock


class Counter:
    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> int:
        self.runs += 1
        return 0


def test_each_interval_runs_once_across_several_schedulers(database: Database, clock: FakeUtcClock) -> None:
    counter = Counter()
    task = PeriodicEntry("purge", 60, counter)
    schedulers = [Scheduler(database, [task], owner=f"process-{n}", clock=clock) for n in range(3)]
    ran_by = []
    for _ in range(5):
        clock.advance(60)
        ran_by.append([bool(scheduler.run_due()) for scheduler in schedulers].count(True))
    assert (counter.runs, ran_by) == (5, [1] * 5)


def test_a_new_scheduler_waits_for_the_next_interval(database: Database, clock: FakeUtcClock) -> None:
    counter = Counter()
    scheduler = Scheduler(database, [PeriodicEntry("purge", 60, counter)], owner="p", clock=clock)
    assert scheduler.run_due() == []
    clock.advance(60)
    assert scheduler.run_due() == ["purge"]


def test_missed_intervals_are_skipped_not_made_up(database: Database, clock: FakeUtcClock) -> None:
    counter = Counter()
    scheduler = Scheduler(database, [PeriodicEntry("purge", 60, counter)], owner="p", clock=clock)
    clock.advance(600)
    scheduler.run_due()
    scheduler.run_due()
    assert counter.runs == 1


def test_a_failing_task_is_logged_and_runs_again_next_interval(
    database: Database, clock: FakeUtcClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise OSError("disk gone")

    scheduler = Scheduler(database, [PeriodicEntry("sweep", 10, broken)], owner="p", clock=clock)
    with caplog.at_level(logging.ERROR, logger="api.workers.scheduler"):
        for _ in range(2):
            clock.advance(10)
            scheduler.run_due()
    assert len(calls) == 2
    assert "periodic sweep failed" in caplog.text


def test_each_task_keeps_its_own_interval(database: Database, clock: FakeUtcClock) -> None:
    fast, slow = Counter(), Counter()
    tasks = [PeriodicEntry("fast", 10, fast), PeriodicEntry("slow", 30, slow)]
    scheduler = Scheduler(database, tasks, owner="p", clock=clock)
    for _ in range(6):
        clock.advance(10)
        scheduler.run_due()
    assert (fast.runs, slow.runs) == (6, 2)


def test_the_wait_ends_at_the_next_slot_boundary(database: Database, clock: FakeUtcClock) -> None:
    clock.now = clock.now.replace(second=0, microsecond=0)
    scheduler = Scheduler(database, [PeriodicEntry("purge", 0.5, Counter())], owner="p", clock=clock)
    clock.advance(0.2)
    assert scheduler.seconds_to_next_slot() == pytest.approx(0.3, abs=0.01)


def test_duplicate_names_are_refused(database: Database) -> None:
    tasks = [PeriodicEntry("purge", 10, Counter()), PeriodicEntry("purge", 20, Counter())]
    with pytest.raises(ValueError, match="unique"):
        Scheduler(database, tasks, owner="p")
