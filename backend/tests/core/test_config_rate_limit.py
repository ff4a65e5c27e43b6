"""The rate-limit settings: defaults, environment syntax, and refusals that name the setting."""

from __future__ import annotations

import pytest

from api.core.config import Settings, SettingsError, load_settings


def test_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.rate_limit_enabled is True
    assert settings.rate_limit_default == "300/minute burst 60"
    assert settings.rate_limit_rules == {}
    assert settings.rate_limit_exempt_paths == ["/api/health", "/api/ready", "/docs", "/openapi.json"]
    assert settings.rate_limit_on_store_error == "open"
    assert settings.rate_limit_dry_run is False
    assert settings.ret_trusted_proxies == []


def test_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_DEFAULT", "100/minute, 2000/day")
    monkeypatch.setenv("RATE_LIMIT_RULES", '{"POST /api/auth/login": "10/minute burst 5"}')
    monkeypatch.setenv("RATE_LIMIT_EXEMPT_PATHS", '["/api/health/", "/metrics"]')
    monkeypatch.setenv("RATE_LIMIT_ON_STORE_ERROR", "closed")
    monkeypatch.setenv("RATE_LIMIT_DRY_RUN", "true")
    monkeypatch.setenv("RET_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.rate_limit_default == "100/minute, 2000/day"
    assert settings.rate_limit_rules == {"POST /api/auth/login": "10/minute burst 5"}
    assert settings.rate_limit_exempt_paths == ["/api/health", "/metrics"]
    assert settings.rate_limit_on_store_error == "closed"
    assert settings.rate_limit_dry_run is True
    assert settings.ret_trusted_proxies == ["10.0.0.0/8", "192.168.1.7/32"]


def test_trusted_proxies_also_read_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RET_TRUSTED_PROXIES", '["::1", "172.16.0.0/12"]')
    assert Settings(_env_file=None).ret_trusted_proxies == ["::1/128", "172.16.0.0/12"]  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RET_TRUSTED_PROXIES", "*", "RET_TRUSTED_PROXIES"),
        ("RET_TRUSTED_PROXIES", "proxy.internal", "RET_TRUSTED_PROXIES"),
        ("RATE_LIMIT_DEFAULT", "lots/minute", "RATE_LIMIT_DEFAULT"),
        ("RATE_LIMIT_RULES", '{"api/login": "5/minute"}', "RATE_LIMIT_RULES"),
        ("RATE_LIMIT_RULES", '{"/api/login": "5/fortnight"}', "RATE_LIMIT_RULES"),
        ("RATE_LIMIT_EXEMPT_PATHS", '["docs"]', "RATE_LIMIT_EXEMPT_PATHS"),
        ("RATE_LIMIT_ON_STORE_ERROR", "maybe", "RATE_LIMIT_ON_STORE_ERROR"),
    ],
)
def test_invalid_values_stop_start_up_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings(_env_file=None)
