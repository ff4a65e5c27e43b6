"""The ``ret`` command: serve the API, validate a deployment, and (later) operate its stores."""

from __future__ import annotations

import os

import orjson
import typer

from api.commands import cache, db, jobs, ratelimit, sessions, users, worker
from api.core.config import Settings, SettingsError, get_settings

app = typer.Typer(help="RET v4 backend: serve and operate the Resource Extraction Tool API.")
app.add_typer(cache.app, name="cache")
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(sessions.app, name="sessions")
app.add_typer(ratelimit.app, name="ratelimit")
app.add_typer(jobs.app, name="jobs")
app.command()(worker.worker)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
METRICS_DIRECTORY = "metrics"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@app.command()
def serve(
    host: str = typer.Option(DEFAULT_HOST, help="Interface to bind."),
    port: int = typer.Option(DEFAULT_PORT, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (they share the SQLite stores)."),
    reload: bool = typer.Option(False, help="Restart on code changes (development only)."),
) -> None:
    """Run the API with uvicorn."""
    import uvicorn

    try:
        settings = get_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if (workers > 1 and not reload) or settings.prometheus_multiproc_dir is not None:
        _share_metrics_between_workers(settings)
    typer.echo(f"RET API on http://{host}:{port} — docs at http://{host}:{port}/docs")
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        access_log=False,  # RequestContextMiddleware writes one line per request.
        log_level=settings.log_level.lower(),
        # Forwarded headers count only from RET_TRUSTED_PROXIES (uvicorn's default trusts loopback).
        proxy_headers=bool(settings.ret_trusted_proxies),
        forwarded_allow_ips=settings.ret_trusted_proxies,
    )


def _share_metrics_between_workers(settings: Settings) -> None:
    """Give the worker processes one emptied PROMETHEUS_MULTIPROC_DIR (default: under the runtime
    root), so /api/metrics sums every worker's counters. Workers are spawned, so they import
    prometheus-client with the variable already set."""
    from api.core.metrics import reset_multiprocess_directory

    directory = settings.prometheus_multiproc_dir or settings.ret_runtime_root / METRICS_DIRECTORY
    reset_multiprocess_directory(directory)
    os.environ[MULTIPROC_VARIABLE] = str(directory)


@app.command()
def validate(
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Check this deployment end to end; exit 1 if any check fails."""
    from api.services import system_checks

    results = system_checks.run_checks()
    if json_output:
        typer.echo(orjson.dumps(system_checks.render_json(results), option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(system_checks.render_text(results))
    raise typer.Exit(0 if all(result.ok for result in results) else 1)


def main() -> None:
    """Entry point of the ``ret`` console script and ``python -m api``."""
    app(prog_name="ret")


if __name__ == "__main__":
    main()
