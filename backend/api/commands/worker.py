"""``ret worker``: run background jobs in processes of their own (beside or instead of the API's)."""

from __future__ import annotations

import logging
import signal
import threading
from functools import partial
from types import FrameType

import typer

from api.core.config import Settings, SettingsError, get_settings
from api.core.logging import configure_logging
from api.core.session_cache import install_session_cache
from api.resources import build_resources, close_resources
from api.workers.registry import load_task_modules
from api.workers.supervisor import supervise

logger = logging.getLogger(__name__)


def worker(
    concurrency: int | None = typer.Option(
        None, min=1, help="Jobs run at once by each process (default: RET_WORKER_CONCURRENCY, at least 1)."
    ),
    processes: int = typer.Option(
        1, min=1, help="Worker processes; with more than one, a supervisor restarts any that dies."
    ),
) -> None:
    """Run background jobs until SIGTERM (running jobs get JOBS_SHUTDOWN_GRACE_SECONDS to finish)."""
    try:
        settings = get_settings()
        load_task_modules(settings.jobs_task_modules)
    except (SettingsError, ImportError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    slots = concurrency or max(1, settings.ret_worker_concurrency)
    serve = partial(serve_worker, settings.model_copy(update={"ret_worker_concurrency": slots}))
    raise typer.Exit(serve() if processes == 1 else supervise(processes, serve))


def serve_worker(settings: Settings) -> int:
    """Run this process's worker and scheduler until SIGTERM/SIGINT; return the exit status."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        resources = build_resources(settings)
    except RuntimeError as exc:
        logger.error("worker cannot start: %s", exc)
        return 2
    install_session_cache(resources.session_cache)
    try:
        resources.job_workers.start(resources.periodic_tasks)
        logger.info("worker %s ready: %d slots", resources.job_workers.owner, settings.ret_worker_concurrency)
        while not stop.wait(1.0):
            pass
        resources.job_workers.stop()
    finally:
        install_session_cache(None)
        close_resources(resources)
    return 0
