"""``ret serve`` hands RET_TRUSTED_PROXIES to uvicorn: never "*", and no loopback trust by default."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from api.cli import app
from api.core import config

runner = CliRunner()


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    calls: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.update(kwargs))
    config.get_settings.cache_clear()
    yield calls
    config.get_settings.cache_clear()


def test_serve_trusts_forwarded_headers_only_from_the_configured_proxies(
    uvicorn_calls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RET_TRUSTED_PROXIES", "10.0.0.0/8,192.168.0.10")
    assert runner.invoke(app, ["serve", "--port", "8123"]).exit_code == 0
    assert uvicorn_calls["proxy_headers"] is True
    assert uvicorn_calls["forwarded_allow_ips"] == ["10.0.0.0/8", "192.168.0.10/32"]


def test_serve_without_trusted_proxies_ignores_forwarded_headers(uvicorn_calls: dict[str, Any]) -> None:
    assert runner.invoke(app, ["serve", "--port", "8123"]).exit_code == 0
    assert uvicorn_calls["proxy_headers"] is False
    assert uvicorn_calls["forwarded_allow_ips"] == []


def test_serve_refuses_to_trust_every_proxy(
    uvicorn_calls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RET_TRUSTED_PROXIES", "*")
    result = runner.invoke(app, ["serve", "--port", "8123"])
    assert result.exit_code == 2
    assert "RET_TRUSTED_PROXIES" in result.stderr
    assert uvicorn_calls == {}
