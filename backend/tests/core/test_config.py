from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from api.core.config import (
    BACKEND_DIR,
    Settings,
    SettingsError,
    load_settings,
    resolve_jwt_secret,
    warn_ignored_variables,
)
from tests.conftest import make_settings


def test_defaults_match_the_documented_names_and_values() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ret_session_db == BACKEND_DIR / "runtime" / "ret_session.db"
    assert settings.ret_runtime_root == BACKEND_DIR / "runtime"
    assert settings.session_cache_max_size == 1000
    assert settings.session_cache_ttl_seconds == 3600
    assert settings.database_url == f"sqlite:///{BACKEND_DIR / 'runtime' / 'ret.db'}"
    assert settings.env == "development"
    assert settings.jwt_secret_key is None


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RET_SESSION_DB", str(tmp_path / "s.db"))
    monkeypatch.setenv("SESSION_CACHE_MAX_SIZE", "10")
    monkeypatch.setenv("session_cache_ttl_seconds", "5.5")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ret_session_db == tmp_path / "s.db"
    assert settings.session_cache_max_size == 10
    assert settings.session_cache_ttl_seconds == 5.5
    assert settings.log_level == "DEBUG"


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SESSION_CACHE_MAX_SIZE=42\n", encoding="utf-8")
    assert Settings(_env_file=env_file).session_cache_max_size == 42  # type: ignore[call-arg]


def test_relative_paths_resolve_against_backend_not_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RET_RUNTIME_ROOT", "./elsewhere")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./elsewhere/x.db")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ret_runtime_root == BACKEND_DIR / "elsewhere"
    assert settings.database_url == f"sqlite:///{BACKEND_DIR / 'elsewhere' / 'x.db'}"


def test_non_sqlite_database_url_is_kept_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@127.0.0.1/test")
    assert load_settings().database_url == "postgresql+psycopg://u@127.0.0.1/test"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESSION_CACHE_MAX_SIZE", "lots"),
        ("SESSION_CACHE_MAX_SIZE", "-1"),
        ("SESSION_CACHE_TTL_SECONDS", "0"),
        ("ENV", "staging"),
        ("LOG_LEVEL", "chatty"),
    ],
)
def test_bad_value_fails_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(_env_file=None)


@pytest.mark.parametrize("secret", [None, "", "changeme", "short-but-real"])
def test_production_refuses_missing_or_placeholder_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("ENV", "production")
    if secret is not None:
        monkeypatch.setenv("JWT_SECRET_KEY", secret)
    with pytest.raises(SettingsError, match="JWT_SECRET_KEY"):
        load_settings(_env_file=None)


def test_production_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", "x" * 40)
    assert load_settings(_env_file=None).env == "production"


def test_development_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, env="development", jwt_secret_key=None)
    first = resolve_jwt_secret(settings)
    second = resolve_jwt_secret(settings)
    key_file = settings.ret_runtime_root / "jwt_secret.key"
    assert first.get_secret_value() == second.get_secret_value()
    assert len(first.get_secret_value()) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_configured_secret_is_used_as_is(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_secret_key="k" * 40)
    assert resolve_jwt_secret(settings).get_secret_value() == "k" * 40
    assert not (settings.ret_runtime_root / "jwt_secret.key").exists()


def test_secret_is_not_shown_in_repr(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jwt_secret_key="s" * 40)
    assert "s" * 40 not in repr(settings)


def test_redis_url_is_ignored_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    with caplog.at_level(logging.WARNING):
        assert warn_ignored_variables() == ["REDIS_URL"]
    assert [r.message for r in caplog.records if "REDIS_URL" in r.message] != []
    assert len(caplog.records) == 1
    assert not hasattr(load_settings(_env_file=None), "redis_url")
