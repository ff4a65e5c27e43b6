"""The record store (``DATABASE_URL``): reachable, and its schema at the latest Alembic revision.

Opened with ``Database`` directly, never ``open_database``: that one applies pending migrations in
development and testing, and this check must report them, not apply them.
"""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from api.core.config import SQLITE_URL_PREFIX, Settings
from api.core.database import Database
from api.services.system_checks.base import CheckFailed

UPGRADE = "run `ret db upgrade`"


def check_record_store(settings: Settings) -> str:
    url = settings.database_url
    shown = make_url(url).render_as_string(hide_password=True)
    _require_sqlite_file(url)
    database = Database(url)
    try:
        try:
            database.ping()
            current = database.current_revision()
        except Exception as exc:
            # The driver's own error, without SQLAlchemy's statement echo and link.
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            raise CheckFailed(
                f"{shown} is unreachable ({type(cause).__name__}: {cause}): check DATABASE_URL, that "
                "the database is up, and (SQLite) that the file is a database"
            ) from exc
        head = database.head_revision()
        if current != head:
            raise CheckFailed(_behind(database, current, head))
    finally:
        database.dispose()
    return f"{shown} reachable, schema at the latest revision {head}"


def _require_sqlite_file(url: str) -> None:
    # Connecting would create an empty file, and an empty store is "behind" anyway: say so instead.
    if not url.startswith(SQLITE_URL_PREFIX) or url.endswith(":memory:"):
        return
    path = Path(url.removeprefix(SQLITE_URL_PREFIX))
    if path.is_dir():
        raise CheckFailed(f"DATABASE_URL points at {path}, a directory: point it at an SQLite file")
    if not path.exists():
        raise CheckFailed(f"{path} does not exist (no migrations applied): {UPGRADE} to create it")


def _behind(database: Database, current: str | None, head: str | None) -> str:
    scripts = ScriptDirectory.from_config(database.alembic_config())
    try:
        pending = [revision.revision for revision in scripts.iterate_revisions(head, current)]
    except (CommandError, RevisionError):
        return (
            f"schema at revision {current}, which this code does not know (latest {head}): deploy "
            "the code that matches the database, or restore a backup made with this code"
        )
    pending.reverse()
    return (
        f"schema at revision {current or 'none (empty database)'}, code expects {head}: "
        f"{len(pending)} migration(s) behind ({', '.join(pending)}): {UPGRADE}"
    )
