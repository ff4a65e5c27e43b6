"""``ret ratelimit`` against a real store under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.core import config
from api.core.rate_limit_policy import Policy
from api.core.rate_limit_store import SQLiteRateLimitStore

runner = CliRunner()
LOGIN = Policy("login", 5, 900)


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "ret_session.db"
    monkeypatch.setenv("RET_SESSION_DB", str(path))
    monkeypatch.setenv("RET_RUNTIME_ROOT", str(tmp_path))
    config.get_settings.cache_clear()
    yield path
    config.get_settings.cache_clear()


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteRateLimitStore]:
    store = SQLiteRateLimitStore(db_path)
    yield store
    store.close()


def test_status_prints_the_live_buckets_of_a_key(store: SQLiteRateLimitStore) -> None:
    store.hit("ip:203.0.113.7", [LOGIN, Policy("default", 300, 60)], 2)
    result = runner.invoke(app, ["ratelimit", "status", "ip:203.0.113.7"])
    assert result.exit_code == 0
    payload = orjson.loads(result.stdout)
    assert payload["key"] == "ip:203.0.113.7"
    login = next(bucket for bucket in payload["buckets"] if bucket["policy"] == "login")
    assert (login["remaining"], login["capacity"]) == (3, 5)
    assert 359 < login["reset_after_seconds"] <= 360


def test_status_of_an_unknown_key_lists_nothing(store: SQLiteRateLimitStore) -> None:
    result = runner.invoke(app, ["ratelimit", "status", "user:404"])
    assert orjson.loads(result.stdout)["buckets"] == []


def test_reset_gives_the_key_its_full_quota_back(store: SQLiteRateLimitStore) -> None:
    store.hit("user:42", [LOGIN], 5)
    store.hit("user:43", [LOGIN], 5)
    result = runner.invoke(app, ["ratelimit", "reset", "user:42"])
    assert result.exit_code == 0
    assert "reset 1 live buckets" in result.stdout
    assert store.hit("user:42", [LOGIN], 5).admitted
    assert not store.hit("user:43", [LOGIN], 1).admitted


def test_corrupt_store_exits_2_naming_the_path(db_path: Path) -> None:
    db_path.write_bytes(b"garbage" * 500)
    result = runner.invoke(app, ["ratelimit", "status", "ip:1.2.3.4"])
    assert result.exit_code == 2
    assert str(db_path) in result.stderr
