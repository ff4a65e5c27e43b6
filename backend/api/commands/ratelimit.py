"""``ret ratelimit``: inspect and reset the rate-limit buckets of one identity.

KEY is what the limiter counts against: ``ip:203.0.113.7``, ``ip:2001:db8:1:2::/64``, ``user:42``, or a
service's own key (e.g. the login attempts of one username from one address).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import typer

from api.core.config import SettingsError, get_settings
from api.core.rate_limit_store import RateLimitStoreError
from api.services.rate_limiter import RateLimiter, build_rate_limiter

app = typer.Typer(help="Inspect and reset rate-limit buckets (in RET_SESSION_DB).", no_args_is_help=True)


@contextmanager
def open_limiter() -> Iterator[RateLimiter]:
    """The configured limiter, closed afterwards; configuration or storage errors exit with status 2."""
    try:
        limiter = build_rate_limiter(get_settings())
    except (SettingsError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        yield limiter
    except RateLimitStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        limiter.close()


@app.command()
def status(key: str) -> None:
    """Print KEY's live buckets as JSON (remaining units, capacity, seconds until full)."""
    with open_limiter() as limiter:
        buckets = limiter.status(key)
    payload = {
        "key": key,
        "buckets": [
            {
                "policy": bucket.policy,
                "remaining": bucket.remaining,
                "capacity": bucket.capacity,
                "reset_after_seconds": round(bucket.reset_after, 3),
            }
            for bucket in buckets
        ],
    }
    typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


@app.command()
def reset(key: str) -> None:
    """Forget KEY's buckets: its next requests start from full quota."""
    with open_limiter() as limiter:
        removed = limiter.reset(key)
    typer.echo(f"reset {removed} live buckets of {key!r}")
