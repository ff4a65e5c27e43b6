"""``ret sessions``: list, clean up and sweep workspace sessions."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from api.commands.context import open_resources

app = typer.Typer(help="Inspect and clean up workspace sessions.", no_args_is_help=True)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_sessions(user: int = typer.Option(..., "--user", help="Owner's user id.")) -> None:
    """List a user's live workspace sessions: id, name, created, last activity, files."""
    with open_resources() as resources:
        for session in resources.storage.list_user_sessions(user):
            files = len(resources.storage.list_files(session.id))
            typer.echo(
                f"{session.id}  {session.name!r}  created {_when(session.created_at)}  "
                f"active {_when(session.last_activity)}  {files} files"
            )


@app.command()
def cleanup(session_id: str) -> None:
    """Remove a workspace session and everything in it (idempotent)."""
    with open_resources() as resources:
        report = resources.storage.cleanup_session(session_id)
    for step, count in report.steps.items():
        typer.echo(f"{step}: {count}")
    if report.failed_steps:
        typer.echo(f"failed steps: {', '.join(report.failed_steps)} (see the log)", err=True)
        raise typer.Exit(1)


@app.command()
def sweep() -> None:
    """Clean expired and half-deleted sessions and orphan directories now."""
    with open_resources() as resources:
        cleaned = resources.storage.sweep_expired()
    typer.echo(f"cleaned {cleaned} workspace sessions")
