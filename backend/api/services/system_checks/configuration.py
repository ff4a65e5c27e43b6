"""Settings that load may still be unusable together: what production needs, what the stores need."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from api.core.config import DEV_SECRET_FILENAME, IGNORED_VARIABLES, Settings, is_usable_secret
from api.services.system_checks.base import CheckFailed


def check_required_settings(settings: Settings) -> str:
    problems = [problem for problem in (_database_url(settings), _production(settings)) if problem]
    if problems:
        raise CheckFailed("; ".join(problems))
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    return (
        f"DATABASE_URL={database}, RET_SESSION_DB={settings.ret_session_db}, JWT secret "
        f"{_secret_source(settings)} ({', '.join(IGNORED_VARIABLES)} not needed)"
    )


def _database_url(settings: Settings) -> str | None:
    try:
        make_url(settings.database_url)
    except ArgumentError:
        return "DATABASE_URL is not a database URL: use e.g. sqlite:///./runtime/ret.db"
    return None


def _production(settings: Settings) -> str | None:
    if settings.env != "production":
        return None
    if settings.ret_session_backend == "memory":
        return "RET_SESSION_BACKEND=memory keeps nothing and is for tests: set it to sqlite in production"
    if not is_usable_secret(settings.jwt_secret_key):
        return "JWT_SECRET_KEY is missing or a placeholder: set a random value of 32+ characters"
    return None


def _secret_source(settings: Settings) -> str:
    if is_usable_secret(settings.jwt_secret_key):
        return "configured"
    return f"generated for development in {settings.ret_runtime_root / DEV_SECRET_FILENAME}"
