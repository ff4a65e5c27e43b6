"""The shared SQLite plumbing: per-thread connections, and the value an UPDATE wrote."""

from __future__ import annotations

import threading
from pathlib import Path

from api.core.sqlite import ThreadConnections, WrittenValue


def test_each_thread_reads_the_value_its_own_update_wrote(tmp_path: Path) -> None:
    written = WrittenValue("written")
    connections = ThreadConnections(tmp_path / "db.sqlite", setup=written.register)
    connections.get().execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    seen: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def count(name: str) -> None:
        connection = connections.get()
        connection.execute("INSERT INTO counters VALUES (?, 0)", (name,))
        start.wait()
        values = []
        for _ in range(200):
            cursor = connection.execute(
                "UPDATE counters SET value = written(value + 1) WHERE name = ?", (name,)
            )
            assert cursor.rowcount == 1
            values.append(written.value)
        seen[name] = values

    threads = [threading.Thread(target=count, args=(f"counter-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connections.close()
    assert seen == {f"counter-{n}": list(range(1, 201)) for n in range(4)}


def test_connections_are_per_thread_and_closed_together(tmp_path: Path) -> None:
    connections = ThreadConnections(tmp_path / "db.sqlite")
    here = connections.get()
    there: list[object] = []
    thread = threading.Thread(target=lambda: there.append(connections.get()))
    thread.start()
    thread.join()
    assert connections.get() is here
    assert there[0] is not here
    connections.close()
