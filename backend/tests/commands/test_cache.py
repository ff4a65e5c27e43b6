"""``ret cache`` against a real store under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.core import config
from api.core.session_cache import SessionCache

runner = CliRunner()


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "ret_session.db"
    monkeypatch.setenv("RET_SESSION_DB", str(path))
    monkeypatch.setenv("RET_RUNTIME_ROOT", str(tmp_path))
    config.get_settings.cache_clear()
    yield path
    config.get_settings.cache_clear()


@pytest.fixture
def cache(db_path: Path) -> Iterator[SessionCache]:
    store = SessionCache(db_path, 10, default_ttl=600, max_value_bytes=1024)
    yield store
    store.close()


def test_get_prints_value_and_ttl_as_json(cache: SessionCache) -> None:
    cache.set("user:1:profile", {"name": "ada"})
    result = runner.invoke(app, ["cache", "get", "user:1:profile"])
    assert result.exit_code == 0
    payload = orjson.loads(result.stdout)
    assert payload["value"] == {"name": "ada"}
    assert 0 < payload["ttl_seconds"] <= 600


def test_get_of_missing_key_exits_1(cache: SessionCache) -> None:
    result = runner.invoke(app, ["cache", "get", "nope"])
    assert result.exit_code == 1


def test_keys_lists_live_keys_with_literal_prefix(cache: SessionCache) -> None:
    cache.set_many({"user:1_a": 1, "user:1a": 2, "user:2": 3})
    result = runner.invoke(app, ["cache", "keys", "user:1_"])
    assert result.stdout.split() == ["user:1_a"]


def test_clear_prefix_removes_entries(cache: SessionCache) -> None:
    cache.set_many({"session:9:a": 1, "session:9:b": 2, "session:10:a": 3})
    result = runner.invoke(app, ["cache", "clear-prefix", "session:9:"])
    assert result.exit_code == 0
    assert "removed 2" in result.stdout
    assert cache.keys() == ["session:10:a"]


def test_clear_prefix_refuses_empty_prefix(cache: SessionCache) -> None:
    cache.set("k", 1)
    result = runner.invoke(app, ["cache", "clear-prefix", ""])
    assert result.exit_code == 2
    assert cache.exists("k")


def test_purge_and_stats(cache: SessionCache) -> None:
    cache.set("live", 1)
    result = runner.invoke(app, ["cache", "stats"])
    assert orjson.loads(result.stdout)["entries"] == 1
    assert runner.invoke(app, ["cache", "purge"]).exit_code == 0


def test_corrupt_store_exits_2_naming_the_path(db_path: Path) -> None:
    db_path.write_bytes(b"garbage" * 500)
    result = runner.invoke(app, ["cache", "stats"])
    assert result.exit_code == 2
    assert str(db_path) in result.stderr
