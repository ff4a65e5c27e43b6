"""Statements of the job queue's hot path, compiled once and run on the raw DBAPI connection.

Submitting, claiming and finishing a job are one short statement each, and SQLAlchemy's per-execute
work (compiling-cache lookup, parameter and result processing, events) cost as much as SQLite's own
insert on the 2-core CI machine (about 200 µs of 400 µs per submit, measured 2026-11-26 for
issue 6). These statements are still written with SQLAlchemy Core, so the SQL stays portable; they
are compiled for the engine's dialect once, and each execution only applies the column types'
bind and result processors (the same conversions SQLAlchemy would apply) on a pooled connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

from api.core.config import SQLITE_URL_PREFIX
from api.core.database import Database
from api.workers.write_gate import gate_for

Processor = Callable[[Any], Any] | None
Row = tuple[Any, ...]


class PreparedStatement:
    """One Core statement compiled for one dialect; ``returning`` lists the columns it yields."""

    def __init__(
        self, statement: Executable, dialect: Dialect, returning: Sequence[ColumnElement[Any]] = ()
    ) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql = str(compiled)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        # Literal values written into the statement (``state == "queued"``) travel as parameters.
        self._defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
        self._binds: dict[str, Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in binds.items()
        }
        # qmark (SQLite) takes a tuple in this order; pyformat (psycopg) takes a dict.
        self._positional: list[tuple[str, Processor]] | None = (
            [(name, self._binds[name]) for name in compiled.positiontup] if compiled.positiontup else None
        )
        self._dialect = dialect
        self._returning = list(returning)
        # Built on first use: some processors depend on the type code the driver reports.
        self._results: list[Processor] | None = None

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The DBAPI parameters for ``values`` (plus the statement's literal values), processed."""
        merged = {**self._defaults, **values}
        if self._positional is not None:
            return tuple(
                processor(merged[name]) if processor else merged[name] for name, processor in self._positional
            )
        return {
            name: processor(value) if (processor := self._binds.get(name)) else value
            for name, value in merged.items()
        }

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> list[Row]:
        """Run the statement; return its (processed) rows, or ``[]`` when it returns none."""
        cursor.execute(self.sql, self.parameters(values))
        if not self._returning:
            return []
        if self._results is None:
            self._results = [
                column.type.dialect_impl(self._dialect).result_processor(self._dialect, description[1])
                for column, description in zip(self._returning, cursor.description, strict=True)
            ]
        results = self._results
        return [
            tuple(
                processor(value) if processor else value
                for processor, value in zip(results, raw, strict=True)
            )
            for raw in cursor.fetchall()
        ]

    def rowcount(self, cursor: Any, values: Mapping[str, Any]) -> int:
        """Run a statement without ``RETURNING``; return how many rows it changed."""
        cursor.execute(self.sql, self.parameters(values))
        return int(cursor.rowcount)


@contextmanager
def raw_transaction(database: Database, *, write: bool, one_statement: bool = False) -> Iterator[Any]:
    """A DBAPI cursor in one transaction on a pooled connection: committed on success, rolled back
    on any error. ``write=True`` on SQLite passes the writer gate (``write_gate``), then begins with
    ``BEGIN IMMEDIATE`` (the write lock up front, so a read-then-write never fails its lock
    upgrade); PostgreSQL begins implicitly. ``one_statement=True`` (the block runs a single
    statement): SQLite runs it in autocommit mode, atomic on its own, without BEGIN and COMMIT."""
    path = sqlite_path(database)
    with gate_for(path).held() if write and path else nullcontext():
        connection = database.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if database.is_sqlite and not one_statement:
                # The record store's SQLite connections run in autocommit mode (api.core.database).
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
            cursor.close()
        finally:
            connection.close()


def sqlite_path(database: Database) -> str | None:
    """The file of an SQLite record store (None for PostgreSQL or an in-memory database)."""
    if not database.url.startswith(SQLITE_URL_PREFIX) or ":memory:" in database.url:
        return None
    return database.url.removeprefix(SQLITE_URL_PREFIX)
