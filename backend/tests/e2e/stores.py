"""What the running server left in its stores, read straight from the SQLite files (read-only)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def _read(database: Path, query: str, *params: object) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as connection:
        return connection.execute(query, params).fetchall()


def session_store_keys(database: Path, prefix: str) -> list[str]:
    """Every row of the session store whose key starts with ``prefix``, expired or not."""
    rows = _read(
        database,
        "SELECT key FROM session_cache WHERE substr(key, 1, ?) = ? ORDER BY key",
        len(prefix),
        prefix,
    )
    return [str(key) for (key,) in rows]


def job_states(database: Path, user_id: int) -> dict[str, str]:
    """Job id → state of every job of ``user_id`` in the record store."""
    rows = _read(database, "SELECT id, state FROM jobs WHERE user_id = ?", user_id)
    return {str(job_id): str(state) for job_id, state in rows}
