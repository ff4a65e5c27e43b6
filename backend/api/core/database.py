"""The record store (users, refresh tokens, audit log, jobs): SQLAlchemy 2 over ``DATABASE_URL``.

SQLite by default (WAL, a busy timeout, foreign keys on), PostgreSQL to scale out. The schema is
owned by Alembic (``backend/alembic``): ``ret db upgrade`` applies migrations; the app's lifespan
applies them itself in development and testing and refuses to start in production when the schema
is behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from api.core.config import BACKEND_DIR, SQLITE_URL_PREFIX, Settings

logger = logging.getLogger(__name__)

ALEMBIC_DIR = BACKEND_DIR / "alembic"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseError(RuntimeError):
    """The record store is unreachable, or its schema does not match this code."""


class Database:
    """An engine and a session factory for one ``DATABASE_URL``."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite and url.startswith(SQLITE_URL_PREFIX) and ":memory:" not in url:
            Path(url.removeprefix(SQLITE_URL_PREFIX)).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, echo=echo, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is bypassed (the SQLAlchemy-documented recipe) so
            # a read-then-write transaction can take the write lock up front with BEGIN IMMEDIATE
            # instead of failing its lock upgrade with "database is locked".
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(sqlite_begin_immediate=True), expire_on_commit=False
        )

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        ``write=True`` is for read-then-write work: on SQLite it begins with ``BEGIN IMMEDIATE``.
        """
        factory = self._write_sessions if write else self._sessions
        with factory() as session, session.begin():
            yield session

    def new_session(self) -> Session:
        """A session the caller manages (used by the request dependency)."""
        return self._sessions()

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    # -- migrations --------------------------------------------------------------------------

    def alembic_config(self) -> AlembicConfig:
        config = AlembicConfig()
        config.set_main_option("script_location", str(ALEMBIC_DIR))
        config.attributes["engine"] = self.engine
        return config

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def schema_is_current(self) -> bool:
        return self.current_revision() == self.head_revision()

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent)."""
        command.upgrade(self.alembic_config(), "head")


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" event issue BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get("sqlite_begin_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def open_database(settings: Settings) -> Database:
    """Open the record store and bring its schema up to date where the environment allows.

    Raises:
        DatabaseError: unreachable, or (in production) migrations are behind.
    """
    database = Database(settings.database_url)
    try:
        database.ping()
        if settings.env == "production":
            if not database.schema_is_current():
                raise DatabaseError(
                    f"DATABASE_URL schema is at {database.current_revision()}, code expects "
                    f"{database.head_revision()}: run `ret db upgrade`"
                )
        else:
            database.upgrade()
    except DatabaseError:
        database.dispose()
        raise
    except Exception as exc:
        database.dispose()
        raise DatabaseError(f"DATABASE_URL {_redacted(settings.database_url)}: {exc}") from exc
    return database


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
