"""SessionCache across real processes: coherence of every L1, exact ``incr``, prefix deletion.

Four worker processes, started once for the module, each serve commands over a pipe; every test opens
a fresh database in each worker and drives them. Every handshake is a pipe round trip: nothing sleeps.

The workers come from a ``forkserver``: like ``spawn`` they never inherit the test process (its
threads, locks or connections), but the server imports the app once and forks each worker from
there, instead of every worker importing it again (about a second each on a 2-core runner).
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from api.core.session_cache import PER_KEY_INVALIDATION_LIMIT, SessionCache

pytestmark = pytest.mark.slow

# Imported once by the fork server; workers find them already loaded.
FORKSERVER_PRELOAD = ["pytest", "api.core.session_cache"]
REPLY_TIMEOUT_SECONDS = 120.0
L1_SIZE = 100


# -- in the worker processes -----------------------------------------------------------------------


def increment_many(cache: SessionCache, keys: list[str], count: int) -> dict[str, list[int]]:
    """``count`` increments spread over ``keys``; returns every value ``incr`` returned, per key."""
    returned: dict[str, list[int]] = {key: [] for key in keys}
    for index in range(count):
        key = keys[index % len(keys)]
        returned[key].append(cache.incr(key))
    return returned


def increment_in_threads(cache: SessionCache, keys: list[str], threads: int, count: int) -> list[str]:
    """``threads`` threads each increment ``count`` times (with a transaction now and then);
    returns the errors they met."""
    errors: list[str] = []

    def work(thread: int) -> None:
        try:
            for index in range(count):
                cache.incr(keys[index % len(keys)])
                if index % 10 == 0:
                    cache.set_many({f"scratch:{thread}:{index % 3}": index, f"scratch:{thread}:x": [index]})
                    cache.get(f"scratch:{thread}:x")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=work, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


HELPERS: dict[str, Callable[..., Any]] = {
    "increment_many": increment_many,
    "increment_in_threads": increment_in_threads,
}


def serve(connection: Connection) -> None:
    """Run commands ``(name, args)`` from the pipe on this process's cache until ``None`` arrives."""
    cache: SessionCache | None = None
    try:
        while (command := connection.recv()) is not None:
            name, args = command
            try:
                if name == "open":
                    if cache is not None:
                        cache.close()
                    cache = SessionCache(args[0], args[1], default_ttl=3600.0, max_value_bytes=1 << 20)
                    result = None
                elif name in HELPERS:
                    result = HELPERS[name](cache, *args)
                else:
                    result = getattr(cache, name)(*args)
                connection.send(("ok", result))
            except Exception as exc:
                connection.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        if cache is not None:
            cache.close()


# -- in the test process ---------------------------------------------------------------------------


class Worker:
    """The test's handle on one worker process."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection

    def send(self, name: str, *args: Any) -> None:
        self.connection.send((name, args))

    def receive(self) -> Any:
        assert self.connection.poll(REPLY_TIMEOUT_SECONDS), f"worker {self.process.pid} did not answer"
        status, result = self.connection.recv()
        assert status == "ok", f"worker {self.process.pid} failed: {result}"
        return result

    def call(self, name: str, *args: Any) -> Any:
        self.send(name, *args)
        return self.receive()

    def stop(self) -> None:
        self.connection.send(None)
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


@pytest.fixture(scope="module")
def worker_pool() -> Iterator[list[Worker]]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    pool = []
    for _ in range(4):
        parent_end, child_end = context.Pipe()
        process = context.Process(target=serve, args=(child_end,), daemon=True)
        process.start()
        child_end.close()
        pool.append(Worker(process, parent_end))
    yield pool
    for worker in pool:
        worker.stop()


@pytest.fixture
def workers(worker_pool: list[Worker], tmp_path: Path) -> list[Worker]:
    """Every worker with a fresh cache (L1 on) on one new database."""
    path = str(tmp_path / "session.db")
    worker_pool[0].call("open", path, L1_SIZE)  # creates the file before the others race to
    for worker in worker_pool[1:]:
        worker.call("open", path, L1_SIZE)
    return worker_pool


def test_processes_opening_a_new_database_at_once_all_succeed(
    worker_pool: list[Worker], tmp_path: Path
) -> None:
    # As when `uvicorn --workers 4` starts on an empty runtime directory: every worker creates the
    # file, switches it to WAL and migrates it at the same moment. The race is short, so repeat it.
    for attempt in range(40):
        path = str(tmp_path / f"fresh-{attempt}.db")
        for worker in worker_pool:
            worker.send("open", path, L1_SIZE)
        for worker in worker_pool:
            worker.receive()
        for index, worker in enumerate(worker_pool):
            worker.call("set", f"worker:{index}", attempt)
        assert worker_pool[0].call("keys", "worker:") == [f"worker:{index}" for index in range(4)]


def apply_random_write(writer: Worker, key: str, rng: random.Random, model: dict[str, Any]) -> None:
    """One random mutating call on ``key`` through ``writer``, mirrored in ``model``."""
    operation = rng.choice(["set", "set", "delete", "incr", "set_many", "clear_pattern"])
    if operation == "set":
        value = rng.choice([rng.randrange(100), f"text-{rng.randrange(100)}", {"n": rng.random()}])
        writer.call("set", key, value)
        model[key] = value
    elif operation == "delete":
        assert writer.call("delete", key) is (key in model)
        model.pop(key, None)
    elif operation == "incr":
        if not isinstance(model.get(key, 0), int):
            writer.call("set", key, 0)
            model[key] = 0
        model[key] = model.get(key, 0) + 1
        assert writer.call("incr", key) == model[key]
    elif operation == "set_many":
        writer.call("set_many", {key: [key], f"{key}:other": 1})
        model.update({key: [key], f"{key}:other": 1})
    else:
        removed = writer.call("clear_pattern", key)
        doomed = [name for name in model if name.startswith(key)]
        assert removed == len(doomed)
        for name in doomed:
            del model[name]


def test_every_write_is_seen_by_the_next_read_in_another_process(workers: list[Worker]) -> None:
    rng = random.Random(20240601)
    keys = ["user:1:login", "user:2:login", "session:9:meta", "rate:ip"]
    model: dict[str, Any] = {}
    first, second = workers[0], workers[1]
    for key in keys:  # both processes hold every key in L1 from here on
        for worker in (first, second):
            worker.call("get", key)
    for round_number in range(1000):
        writer, reader = (first, second) if round_number % 2 == 0 else (second, first)
        key = rng.choice(keys)
        apply_random_write(writer, key, rng, model)
        expected = model.get(key)
        assert reader.call("get", key) == expected, f"round {round_number}: stale read of {key}"
        assert reader.call("get", key) == expected, f"round {round_number}: stale L1 copy of {key}"
        assert writer.call("get", key) == expected, f"round {round_number}: writer lost {key}"
    for worker in (first, second):  # the second read of a present key is an L1 hit in every round
        assert worker.call("stats")["hits_l1"] >= 250


def test_concurrent_increments_from_four_processes_are_exact(workers: list[Worker]) -> None:
    keys = ["counter:a", "counter:b", "counter:c", "counter:d"]
    per_process = 5000
    for worker in workers:
        worker.send("increment_many", keys, per_process)
    returned = [worker.receive() for worker in workers]
    expected_total = len(workers) * per_process // len(keys)
    for key in keys:
        assert workers[0].call("get", key) == expected_total
        # Atomic: each increment saw a distinct value, so together they returned 1..total once each.
        seen = sorted(value for process in returned for value in process[key])
        assert seen == list(range(1, expected_total + 1))


def test_four_processes_of_four_threads_never_see_database_is_locked(workers: list[Worker]) -> None:
    keys = ["counter:a", "counter:b"]
    threads, per_thread = 4, 1000
    for worker in workers:
        worker.send("increment_in_threads", keys, threads, per_thread)
    errors = [error for worker in workers for error in worker.receive()]
    assert errors == []
    total = len(workers) * threads * per_thread
    assert workers[0].call("get_many", keys) == dict.fromkeys(keys, total // len(keys))


def test_clear_pattern_in_one_process_empties_another_process_l1(workers: list[Worker]) -> None:
    writer, reader = workers[0], workers[1]
    cleared = {f"user:1:{name}": name for name in ["login:a", "login:b", "prefs", "cart"]}
    kept = {"user:10:login:a": "kept", "user:2:prefs": "kept", "user:1": "kept"}
    writer.call("set_many", {**cleared, **kept})
    for key in [*cleared, *kept]:
        reader.call("get", key)
    hits_before = reader.call("stats")["hits_l1"]
    assert reader.call("get_many", list(cleared)) == cleared
    assert reader.call("stats")["hits_l1"] == hits_before + len(cleared)  # the reader had them in L1
    assert writer.call("clear_pattern", "user:1:") == len(cleared)
    for key in cleared:
        assert reader.call("get", key) is None
    assert reader.call("get_many", list(cleared)) == {}
    assert reader.call("get_many", list(kept)) == kept


def test_clear_pattern_of_more_keys_than_per_key_invalidation_empties_another_process_l1(
    worker_pool: list[Worker], tmp_path: Path
) -> None:
    count = PER_KEY_INVALIDATION_LIMIT + 100
    path = str(tmp_path / "session.db")
    writer, reader = worker_pool[0], worker_pool[1]
    writer.call("open", path, L1_SIZE)
    reader.call("open", path, count + 10)
    keys = [f"session:7:{index}" for index in range(count)]
    writer.call("set_many", dict.fromkeys(keys, 1))
    writer.call("set", "session:8:kept", "kept")
    assert len(reader.call("get_many", keys)) == count
    assert reader.call("stats")["l1_size"] == count
    assert writer.call("clear_pattern", "session:7:") == count
    assert reader.call("get_many", keys) == {}
    assert reader.call("get", "session:8:kept") == "kept"
