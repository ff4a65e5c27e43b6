"""StorageService with an injected clock: expiry, sweep, crash recovery, cleanup hooks."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.core.session_cache import SessionCache
from api.errors import NotFoundError
from api.services.storage_service import StorageLimits, StorageService
from tests.support.clock import FakeClock

IDLE = 600.0
GRACE = 300.0


class Crash(BaseException):
    """Stands for the process dying mid-cleanup: nothing after it runs, nothing catches it."""


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time: directory ages come from file mtimes, which tests move back.
    return FakeClock(time.time())


@pytest.fixture
def cache(tmp_path: Path, clock: FakeClock) -> Iterator[SessionCache]:
    store = SessionCache(tmp_path / "s.db", 100, default_ttl=3600, clock=clock, max_value_bytes=1 << 20)
    yield store
    store.close()


@pytest.fixture
def storage(tmp_path: Path, cache: SessionCache, clock: FakeClock) -> StorageService:
    limits = StorageLimits(
        max_upload_bytes=1 << 20,
        user_quota_bytes=1 << 30,
        max_sessions_per_user=5,
        orphan_grace_seconds=GRACE,
    )
    return StorageService(cache, tmp_path / "runtime", IDLE, limits, clock)


def _with_file(storage: StorageService, user_id: int = 1) -> str:
    session = storage.create_session(user_id)
    (storage.path(session.id, "input") / "a.xml").write_bytes(b"<a/>")
    (storage.path(session.id, "output") / "a.csv").write_bytes(b"x\n")
    storage.register_outputs(session.id)
    return session.id


def _age_directories(storage: StorageService, seconds: float) -> None:
    # Directory ages come from the filesystem clock; move their mtimes back instead of sleeping.
    for entry in storage.root.iterdir():
        stamp = entry.stat().st_mtime - seconds
        os.utime(entry, (stamp, stamp))


def _keys(cache: SessionCache) -> list[str]:
    return cache.keys()


def test_path_never_leaves_the_session_directory(storage: StorageService) -> None:
    session = storage.create_session(1)
    assert storage.path(session.id, "input", "../../x.xml") == storage.path(session.id, "input") / "x.xml"
    with pytest.raises(NotFoundError):
        storage.path("../" + session.id)
    with pytest.raises(NotFoundError):
        storage.path(session.id.upper())


def test_activity_slides_the_idle_expiry(storage: StorageService, clock: FakeClock) -> None:
    session = storage.create_session(1)
    for _ in range(5):
        clock.advance(IDLE * 0.8)
        storage.owned_session(session.id, 1)
    assert storage.get_session(session.id) is not None


def test_idle_sessions_expire_and_are_swept(
    storage: StorageService, clock: FakeClock, cache: SessionCache
) -> None:
    session_id = _with_file(storage)
    clock.advance(IDLE + 1)
    assert storage.get_session(session_id) is None
    assert storage.list_user_sessions(1) == []
    _age_directories(storage, GRACE + 1)
    assert storage.sweep_expired() == 1
    assert not storage.path(session_id).exists()
    assert _keys(cache) == []


def test_sweep_leaves_live_sessions_and_young_orphans_alone(
    storage: StorageService, clock: FakeClock
) -> None:
    live = _with_file(storage)
    orphan = storage.path("0" * 32)
    orphan.mkdir(parents=True)
    assert storage.sweep_expired() == 0
    assert storage.path(live).exists()
    assert orphan.exists()
    _age_directories(storage, GRACE + 1)
    assert storage.sweep_expired() == 1
    assert storage.path(live).exists()
    assert not orphan.exists()


def test_cleanup_is_idempotent_and_reports_each_step(storage: StorageService, cache: SessionCache) -> None:
    session_id = _with_file(storage)
    first = storage.cleanup_session(session_id)
    assert first.failed_steps == []
    assert first.steps["cache entries"] == 4  # meta, owner, output record, index entry
    assert first.steps["files"] > 0
    second = storage.cleanup_session(session_id)
    assert second.failed_steps == []
    assert second.steps == {"cache entries": 0, "files": 0}
    assert _keys(cache) == []


def test_cleanup_runs_plugged_steps_first_and_survives_their_failure(storage: StorageService) -> None:
    calls: list[str] = []

    def cancel_jobs(session_id: str) -> int:
        calls.append("jobs")
        return 2

    def clear_index(session_id: str) -> int:
        calls.append("index")
        raise OSError("index is corrupt")

    storage.cleanup_steps += [("cancel jobs", cancel_jobs), ("search index", clear_index)]
    session_id = _with_file(storage)
    report = storage.cleanup_session(session_id)
    assert calls == ["jobs", "index"]
    assert report.steps["cancel jobs"] == 2
    assert report.failed_steps == ["search index"]
    assert not storage.path(session_id).exists()


@pytest.mark.parametrize("crash_in", ["cancel jobs", "files"])
def test_a_cleanup_killed_midway_is_finished_by_the_sweep(
    storage: StorageService, cache: SessionCache, monkeypatch: pytest.MonkeyPatch, crash_in: str
) -> None:
    session_id = _with_file(storage)

    def crash(*args: object, **kwargs: object) -> int:
        raise Crash

    if crash_in == "files":
        monkeypatch.setattr("api.services.storage_service.shutil.rmtree", crash)
    storage.cleanup_steps.append(("cancel jobs", crash if crash_in == "cancel jobs" else lambda sid: 0))
    with pytest.raises(Crash):
        storage.cleanup_session(session_id)
    assert storage.get_session(session_id) is None  # already invisible to its owner
    monkeypatch.undo()
    storage.cleanup_steps.clear()
    _age_directories(storage, GRACE + 1)
    assert storage.sweep_expired() == 1
    assert not storage.path(session_id).exists()
    assert _keys(cache) == []


def test_sweep_removes_keys_left_without_a_session(storage: StorageService, cache: SessionCache) -> None:
    session_id = _with_file(storage)
    cache.delete(f"session:{session_id}:meta")
    _age_directories(storage, GRACE + 1)
    storage.sweep_expired()
    assert _keys(cache) == []


def test_sweep_removes_stale_part_files_of_live_sessions(storage: StorageService, clock: FakeClock) -> None:
    session = storage.create_session(1)
    part = storage.path(session.id, "input") / ".upload-dead.part"
    part.write_bytes(b"half")
    fresh = storage.path(session.id, "input") / ".upload-live.part"
    fresh.write_bytes(b"writing")
    stamp = clock() - GRACE - 1
    os.utime(part, (stamp, stamp))
    os.utime(fresh, (clock(), clock()))
    storage.sweep_expired()
    assert not part.exists()
    assert fresh.exists()


def test_cleanup_user_sessions_cleans_every_session_of_the_user(storage: StorageService) -> None:
    mine = [_with_file(storage, 1), _with_file(storage, 1)]
    theirs = _with_file(storage, 2)
    assert storage.cleanup_user_sessions(1) == 2
    assert all(not storage.path(session_id).exists() for session_id in mine)
    assert storage.path(theirs).exists()
