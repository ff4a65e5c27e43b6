"""kill -9: a write that returned survives the sudden death of its process.

A child process writes through SessionCache and acknowledges each write over a pipe once the call
has returned; the test SIGKILLs it at a random moment (including while it is still opening the
database), then reopens the file and checks every acknowledged write and the file's integrity.
Children come from a ``forkserver`` (see ``test_session_cache_multiprocess``) so 25 rounds stay cheap.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from api.core.session_cache import SessionCache

pytestmark = pytest.mark.slow

ROUNDS = 25
MAX_ACKNOWLEDGEMENTS_BEFORE_KILL = 300
FORKSERVER_PRELOAD = ["pytest", "api.core.session_cache"]
REPLY_TIMEOUT_SECONDS = 60.0


def open_cache(path: Path) -> SessionCache:
    return SessionCache(path, 10, default_ttl=3600.0, max_value_bytes=1 << 20, synchronous="NORMAL")


def write_until_killed(path: Path, round_number: int, connection: Connection) -> None:
    """In the child: write forever, acknowledging each write after it returned.

    ``synchronous=NORMAL`` (the default) is the mode that must survive a killed process; FULL only
    adds safety against power loss, which killing a process cannot show."""
    rng = random.Random(round_number)
    cache = open_cache(path)
    for index in range(10**9):
        key = f"round:{round_number}:{index}"
        step = index % 4
        if step == 0:  # a value big enough to split pages now and then
            cache.set(key, {"index": index, "pad": "x" * rng.randrange(2000)})
            connection.send(("set", key, index))
        elif step == 1:
            cache.set_many({key: index, f"{key}:b": [index]})
            connection.send(("set_many", key, index))
        elif step == 2:
            counter = f"counter:{round_number}"
            connection.send(("incr", counter, cache.incr(counter)))
        else:
            deleted = f"round:{round_number}:{index - 3}"
            cache.delete(deleted)
            connection.send(("delete", deleted, None))


@dataclass
class Acknowledged:
    """What the test knows was durably written: the model after every acknowledged write."""

    present: dict[str, Any] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)

    def record(self, operation: str, key: str, index: Any) -> None:
        if operation == "set":
            self._put(key, {"index": index})
        elif operation == "set_many":
            self._put(key, index)
            self._put(f"{key}:b", [index])
        elif operation == "incr":
            self.counters[key] = index
        else:
            self.present.pop(key, None)
            self.absent.add(key)

    def forget(self, key: str) -> None:
        """``key`` may or may not be stored: its last write was in flight when the writer died."""
        self.present.pop(key, None)
        self.absent.discard(key)

    def _put(self, key: str, value: Any) -> None:
        self.present[key] = value
        self.absent.discard(key)


def run_one_round(
    context: multiprocessing.context.ForkServerContext,
    path: Path,
    round_number: int,
    rng: random.Random,
    acknowledged: Acknowledged,
) -> int:
    """Start a writer, kill it after a random number of acknowledgements; return how many came."""
    parent_end, child_end = context.Pipe(duplex=False)
    child = context.Process(target=write_until_killed, args=(path, round_number, child_end))
    child.start()
    child_end.close()
    kill_after = rng.randrange(MAX_ACKNOWLEDGEMENTS_BEFORE_KILL)
    received = 0
    while received < kill_after:
        assert parent_end.poll(REPLY_TIMEOUT_SECONDS), "the writer stopped acknowledging"
        acknowledged.record(*parent_end.recv())
        received += 1
    child.kill()
    child.join()
    assert child.exitcode == -9
    while True:  # acknowledgements already in the pipe are writes that returned, too
        try:
            acknowledged.record(*parent_end.recv())
        except EOFError:
            break
        received += 1
    parent_end.close()
    # The write after the last acknowledged one may have committed unacknowledged; only a delete
    # changes what is certain (an increment is allowed for below).
    if received % 4 == 3:
        acknowledged.forget(f"round:{round_number}:{received - 3}")
    return received


def assert_acknowledged_writes_present(path: Path, acknowledged: Acknowledged) -> None:
    cache = open_cache(path)
    try:
        stored = cache.get_many([*acknowledged.present, *acknowledged.absent])
        for key, value in acknowledged.present.items():
            assert key in stored, f"acknowledged write of {key} was lost"
            actual = stored[key]
            assert (actual["index"] if isinstance(actual, dict) else actual) == (
                value["index"] if isinstance(value, dict) else value
            )
        assert not set(stored) & acknowledged.absent, "an acknowledged delete was undone"
        for counter, last in acknowledged.counters.items():
            # The writer may have died after committing an increment but before acknowledging it.
            assert cache.get(counter) in (last, last + 1), f"{counter} lost acknowledged increments"
    finally:
        cache.close()


def integrity(path: Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    path = tmp_path / "session.db"
    open_cache(path).close()
    rng = random.Random(20240602)
    acknowledged = Acknowledged()
    total = 0
    for round_number in range(ROUNDS):
        total += run_one_round(context, path, round_number, rng, acknowledged)
        assert integrity(path) == [("ok",)], f"round {round_number}"
        assert_acknowledged_writes_present(path, acknowledged)
    assert total > ROUNDS * 10  # the writers really wrote (and were killed mid-stream)
    assert len(acknowledged.counters) > ROUNDS // 2
