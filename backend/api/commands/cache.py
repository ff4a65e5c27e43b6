"""``ret cache``: inspect and maintain the session store of this deployment."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import typer

from api.core.cache_contract import CacheBackend, SessionCacheError
from api.core.config import SettingsError, get_settings
from api.core.session_cache import build_cache

app = typer.Typer(help="Inspect and maintain the session store (RET_SESSION_DB).", no_args_is_help=True)


@contextmanager
def open_cache() -> Iterator[CacheBackend]:
    """The configured store, closed afterwards; configuration or storage errors exit with status 2."""
    try:
        cache = build_cache(get_settings())
    except (SettingsError, SessionCacheError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        yield cache
    finally:
        cache.close()


def _printable(value: Any) -> Any:
    return {"bytes_base64": base64.b64encode(value).decode()} if isinstance(value, bytes) else value


@app.command()
def stats() -> None:
    """Entry count and this process's counters, as JSON."""
    with open_cache() as cache:
        typer.echo(orjson.dumps(cache.stats(), option=orjson.OPT_INDENT_2).decode())


@app.command()
def get(key: str) -> None:
    """Print the live value of KEY as JSON (bytes as base64) and its TTL; exit 1 if missing."""
    with open_cache() as cache:
        ttl = cache.ttl(key)
        value = cache.get(key)
    if ttl is None:
        typer.echo(f"{key}: missing or expired", err=True)
        raise typer.Exit(1)
    typer.echo(orjson.dumps({"key": key, "ttl_seconds": round(ttl, 3), "value": _printable(value)}).decode())


@app.command()
def keys(prefix: str = typer.Argument("", help="Literal key prefix (default: every key).")) -> None:
    """List live keys starting with PREFIX, sorted, one per line."""
    with open_cache() as cache:
        for key in cache.keys(prefix):
            typer.echo(key)


@app.command("clear-prefix")
def clear_prefix(prefix: str) -> None:
    """Remove every entry whose key starts with PREFIX (literal, case-sensitive)."""
    if not prefix:
        typer.echo("error: an empty prefix would remove everything; refusing", err=True)
        raise typer.Exit(2)
    with open_cache() as cache:
        removed = cache.clear_pattern(prefix)
    typer.echo(f"removed {removed} live entries with prefix {prefix!r}")


@app.command()
def purge() -> None:
    """Remove expired entries now (the server also does this periodically)."""
    with open_cache() as cache:
        removed = cache.purge_expired()
    typer.echo(f"purged {removed} expired entries")
