"""``ret sessions`` against a real deployment under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.core import config
from api.resources import AppResources, build_resources, close_resources

runner = CliRunner()


@pytest.fixture
def resources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppResources]:
    for name, value in {
        "ENV": "testing",
        "RET_RUNTIME_ROOT": str(tmp_path / "runtime"),
        "RET_SESSION_DB": str(tmp_path / "runtime" / "s.db"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'runtime' / 'ret.db'}",
        "JWT_SECRET_KEY": "k" * 40,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
    }.items():
        monkeypatch.setenv(name, value)
    config.get_settings.cache_clear()
    opened = build_resources(config.get_settings())
    yield opened
    close_resources(opened)
    config.get_settings.cache_clear()


def test_list_shows_a_users_sessions(resources: AppResources) -> None:
    session = resources.storage.create_session(7, "deposits")
    result = runner.invoke(app, ["sessions", "list", "--user", "7"])
    assert result.exit_code == 0
    assert session.id in result.stdout
    assert "'deposits'" in result.stdout
    assert runner.invoke(app, ["sessions", "list", "--user", "8"]).stdout == ""


def test_cleanup_removes_the_session(resources: AppResources) -> None:
    session = resources.storage.create_session(7)
    result = runner.invoke(app, ["sessions", "cleanup", session.id])
    assert result.exit_code == 0
    assert "files:" in result.stdout
    assert not resources.storage.path(session.id).exists()
    assert resources.session_cache.keys(f"session:{session.id}:") == []


def test_sweep_reports_what_it_cleaned(resources: AppResources) -> None:
    result = runner.invoke(app, ["sessions", "sweep"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "cleaned 0 workspace sessions"
