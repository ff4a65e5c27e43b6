"""Opening the deployment's stores for a command, with configuration errors reported plainly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from api.core.config import SettingsError, get_settings
from api.resources import AppResources, build_resources, close_resources


@contextmanager
def open_resources() -> Iterator[AppResources]:
    """Every store of the configured deployment, closed afterwards; failures exit with status 2."""
    try:
        resources = build_resources(get_settings())
    except (SettingsError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        yield resources
    finally:
        close_resources(resources)
