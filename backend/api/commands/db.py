"""``ret db``: migrations of the record store (DATABASE_URL)."""

from __future__ import annotations

import typer

from api.core.config import SettingsError, get_settings
from api.core.database import Database

app = typer.Typer(help="Migrate and inspect the record store schema (DATABASE_URL).", no_args_is_help=True)


def _database() -> Database:
    try:
        return Database(get_settings().database_url)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def upgrade() -> None:
    """Apply every pending migration."""
    database = _database()
    try:
        database.upgrade()
        typer.echo(f"schema at revision {database.current_revision()}")
    finally:
        database.dispose()


@app.command()
def current() -> None:
    """Print the schema revision and whether it is the latest; exit 1 if migrations are pending."""
    database = _database()
    try:
        current, head = database.current_revision(), database.head_revision()
    finally:
        database.dispose()
    typer.echo(f"current {current}, latest {head}")
    raise typer.Exit(0 if current == head else 1)
