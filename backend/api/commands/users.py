"""``ret users``: create accounts from the command line (the first admin, service accounts)."""

from __future__ import annotations

import sys

import typer

from api.commands.context import open_resources
from api.errors import AppError

app = typer.Typer(help="Manage user accounts in the record store (DATABASE_URL).", no_args_is_help=True)


@app.command()
def create(
    username: str,
    admin: bool = typer.Option(False, "--admin", help="Give the user the admin role."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Create USERNAME; the password is prompted for (twice) unless --password-stdin is given."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with open_resources() as resources:
        try:
            user = resources.users.create_user(username, password, "admin" if admin else "user")
        except AppError as exc:
            typer.echo(f"error: {exc.detail}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"created user {user.username!r} (id {user.id}, role {user.role})")
