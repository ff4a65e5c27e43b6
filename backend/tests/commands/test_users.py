"""``ret users create`` and ``ret db`` against a real record store under tmp_path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.core import config
from api.core.database import Database

runner = CliRunner()


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'ret.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("RET_RUNTIME_ROOT", str(tmp_path))
    monkeypatch.setenv("RET_SESSION_DB", str(tmp_path / "s.db"))
    monkeypatch.setenv("ENV", "testing")
    monkeypatch.setenv("JWT_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("PASSWORD_HASH_MEMORY_KIB", "1024")
    config.get_settings.cache_clear()
    yield url
    config.get_settings.cache_clear()


def test_db_upgrade_then_current(database_url: str) -> None:
    assert runner.invoke(app, ["db", "current"]).exit_code == 1
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 0
    assert re.fullmatch(r"current (\w+), latest \1\n", result.stdout), result.stdout


def test_users_create_with_password_from_stdin(database_url: str) -> None:
    result = runner.invoke(
        app, ["users", "create", "Ada", "--admin", "--password-stdin"], input="a-long-password-1\n"
    )
    assert result.exit_code == 0, result.output
    assert "role admin" in result.stdout
    database = Database(database_url)
    try:
        from api.models import User

        with database.session() as session:
            user = session.query(User).one()
            assert (user.username, user.role) == ("Ada", "admin")
            assert "a-long-password-1" not in user.password_hash
    finally:
        database.dispose()


def test_users_create_refuses_duplicate_and_weak_password(database_url: str) -> None:
    runner.invoke(app, ["users", "create", "ada", "--password-stdin"], input="a-long-password-1\n")
    duplicate = runner.invoke(
        app, ["users", "create", "ADA", "--password-stdin"], input="a-long-password-2\n"
    )
    assert duplicate.exit_code == 1
    assert "taken" in duplicate.stderr
    weak = runner.invoke(app, ["users", "create", "bob", "--password-stdin"], input="short\n")
    assert weak.exit_code == 1
    assert "at least" in weak.stderr


def test_users_create_prompts_twice(database_url: str) -> None:
    result = runner.invoke(app, ["users", "create", "carol"], input="a-long-password-3\na-long-password-3\n")
    assert result.exit_code == 0, result.output
