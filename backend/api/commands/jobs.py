"""``ret jobs``: inspect and manage background jobs (the jobs table in DATABASE_URL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import orjson
import typer

from api.commands.context import open_resources
from api.errors import AppError
from api.workers.queue import JobQueue
from api.workers.records import JobRecord

app = typer.Typer(help="Inspect and manage background jobs (DATABASE_URL).", no_args_is_help=True)


@contextmanager
def open_queue() -> Iterator[JobQueue]:
    """The deployment's queue; an ``AppError`` (unknown job, wrong state) exits with status 1."""
    with open_resources() as resources:
        try:
            yield resources.jobs
        except AppError as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            raise typer.Exit(1) from None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _line(record: JobRecord) -> str:
    return (
        f"{record.id}  {record.type:<20} {record.state:<9} {record.progress:>3}%  "
        f"attempt {record.attempts}/{record.max_attempts}  created {_when(record.created_at)}  "
        f"user {record.user_id if record.user_id is not None else '-'}"
    )


def _show(record: JobRecord) -> None:
    typer.echo(orjson.dumps(dataclasses.asdict(record), option=orjson.OPT_INDENT_2).decode())


@app.command("list")
def list_jobs(
    state: Annotated[list[str] | None, typer.Option("--state", help="Only this state (repeatable).")] = None,
    task_type: str | None = typer.Option(None, "--type", help="Only this task."),
    user: int | None = typer.Option(None, "--user", help="Only this owner's user id."),
    session: str | None = typer.Option(None, "--session", help="Only this workspace session."),
    limit: int = typer.Option(50, min=1, max=500, help="At most this many, newest first."),
) -> None:
    """List jobs, newest first: id, task, state, progress, attempts, created, owner."""
    with open_queue() as queue:
        page = queue.list(
            user_id=user, session_id=session, states=state or (), task_type=task_type, limit=limit
        )
    for record in page.items:
        typer.echo(_line(record))
    typer.echo(f"{len(page.items)} of {page.total} jobs")


def _one(action: Callable[[JobQueue, str], JobRecord], job_id: str) -> None:
    with open_queue() as queue:
        record = action(queue, job_id)
    _show(record)


@app.command()
def show(job_id: str) -> None:
    """Print one job as JSON, its error traceback included."""
    _one(JobQueue.get, job_id)


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a job (a running one stops at its next progress report)."""
    _one(JobQueue.cancel, job_id)


@app.command()
def retry(job_id: str) -> None:
    """Queue a failed, dead or cancelled job again, attempts from zero."""
    _one(JobQueue.retry, job_id)


@app.command()
def prune(
    days: float | None = typer.Option(None, min=0, help="Age in days (default: JOBS_RETENTION_DAYS)."),
) -> None:
    """Delete finished jobs older than the retention period (the server also does this hourly)."""
    with open_queue() as queue:
        removed = queue.prune(days)
    typer.echo(f"pruned {removed} finished jobs")
