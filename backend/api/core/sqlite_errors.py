"""Telling SQLite's errors apart (shared by ``api.core.sqlite`` and ``api.core.checkpointer``,
which ``api.core.sqlite`` imports, so it cannot live there)."""

from __future__ import annotations

import sqlite3


def is_busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's SQLITE_BUSY (another connection holds a lock we need)."""
    code = getattr(error, "sqlite_errorcode", None)  # absent on errors raised by Python code
    return (
        isinstance(error, sqlite3.OperationalError)
        and code is not None
        and code & 0xFF == sqlite3.SQLITE_BUSY
    )
