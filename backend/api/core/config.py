"""Application settings: the one place that reads the environment.

Every setting has an environment variable of the same name (case-insensitive) and may also come from
``backend/.env``. Relative paths resolve against the backend directory, never the caller's working
directory, so ``make run`` and ``uvicorn api.main:app`` started from ``backend/`` use the same files.
"""

from __future__ import annotations

import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api.core import rate_limit_policy as rate_limits

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parents[2]
ENV_FILE = BACKEND_DIR / ".env"
DEV_SECRET_FILENAME = "jwt_secret.key"  # noqa: S105 - a file name, not a secret
MIN_SECRET_LENGTH = 32
# Values copied from examples and tutorials; a production deployment must never run with one.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "your-secret-key", "placeholder"}
)
IGNORED_VARIABLES = ("REDIS_URL",)
SQLITE_URL_PREFIX = "sqlite:///"

Environment = Literal["development", "production", "testing"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingsError(RuntimeError):
    """The configuration is invalid; the message names the setting(s) at fault."""


class Settings(BaseSettings):
    """Every configurable value of the service, validated at start-up."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    env: Environment = "development"
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"

    ret_runtime_root: Path = Path("./runtime")
    ret_session_db: Path = Path("./runtime/ret_session.db")
    # sqlite: the embedded default; memory: one process, nothing kept (tests only).
    ret_session_backend: Literal["sqlite", "memory"] = "sqlite"
    ret_session_db_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    session_cache_max_size: int = Field(default=1000, ge=0)
    session_cache_ttl_seconds: float = Field(default=3600, gt=0, allow_inf_nan=False)
    session_cache_max_value_bytes: int = Field(default=1024 * 1024, gt=0)
    session_cache_purge_interval_seconds: float = Field(default=60, gt=0, allow_inf_nan=False)

    database_url: str = SQLITE_URL_PREFIX + "./runtime/ret.db"
    jwt_secret_key: SecretStr | None = None
    jwt_issuer: str = "ret-api"
    jwt_audience: str = "ret-clients"
    access_token_expire_seconds: int = Field(default=15 * 60, gt=0, le=24 * 3600)
    # A login session ends after this much inactivity, and in any case after the absolute cap.
    login_session_idle_seconds: int = Field(default=3600, gt=0)
    login_session_max_seconds: int = Field(default=12 * 3600, gt=0)
    # Failed login attempts allowed per (username, client address) and per client address.
    login_attempts_per_user_ip: Annotated[str, AfterValidator(rate_limits.check_policies)] = "5/15 minutes"
    login_attempts_per_ip: Annotated[str, AfterValidator(rate_limits.check_policies)] = "50/15 minutes"
    password_min_length: int = Field(default=10, ge=8, le=128)
    # argon2id cost; lower only in tests (OWASP's minimum is time 2 with 19 MiB).
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=64 * 1024, ge=64)
    ret_admin_username: str = "admin"
    ret_admin_password: SecretStr | None = None

    # Workspace sessions: idle expiry (default: SESSION_CACHE_TTL_SECONDS) and limits.
    workspace_idle_ttl_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    user_quota_bytes: int = Field(default=5 * 1024 * 1024 * 1024, gt=0)
    max_sessions_per_user: int = Field(default=20, gt=0)
    upload_bytes_per_hour: int = Field(default=10 * 1024 * 1024 * 1024, gt=0)
    # A session directory with no metadata is removed by the sweep once it is this old.
    orphan_grace_seconds: float = Field(default=300, ge=0, allow_inf_nan=False)

    # Background jobs (docs/jobs.md). Worker threads in each API process (0: none; run `ret worker`).
    ret_worker_concurrency: int = Field(default=2, ge=0, le=256)
    jobs_retention_days: float = Field(default=7, gt=0, allow_inf_nan=False)
    # A running job's worker renews its lease every third of this; a job whose lease runs out is
    # taken over by another worker (its worker died or hung).
    jobs_lease_seconds: float = Field(default=30, ge=0.1, allow_inf_nan=False)
    # How often an idle worker looks for jobs submitted by other processes (its own wake at once).
    jobs_poll_interval_seconds: float = Field(default=0.05, gt=0, le=10, allow_inf_nan=False)
    jobs_max_attempts: int = Field(default=3, ge=1, le=100)
    # Retry n waits about base * 2**(n-1) seconds (half of it random), never more than the cap.
    jobs_retry_backoff_seconds: float = Field(default=2, ge=0, allow_inf_nan=False)
    jobs_retry_backoff_max_seconds: float = Field(default=600, ge=0, allow_inf_nan=False)
    jobs_shutdown_grace_seconds: float = Field(default=30, ge=0, allow_inf_nan=False)
    jobs_prune_interval_seconds: float = Field(default=3600, gt=0, allow_inf_nan=False)
    # Extra modules that register tasks, imported by every process (JSON list of module names).
    jobs_task_modules: list[str] = Field(default_factory=list)

    # Conversion (docs/conversion.md): scan limits, enforced on the bytes actually extracted.
    max_nested_zip_depth: int = Field(default=5, ge=1, le=100)
    max_total_files: int = Field(default=20_000, gt=0)
    max_total_bytes: int = Field(default=2 * 1024 * 1024 * 1024, gt=0)
    max_per_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_compression_ratio: float = Field(default=200, gt=1, allow_inf_nan=False)
    # Processes converting one job's files (0: one per CPU core; 1: the job's own process only).
    conversion_processes: int = Field(default=0, ge=0, le=64)

    cors_origins: list[str] = Field(default_factory=list)

    # Rate limiting (docs/rate-limiting.md). Policies read like "300/minute burst 60", "5/15 minutes".
    rate_limit_enabled: bool = True
    rate_limit_default: Annotated[str, AfterValidator(rate_limits.check_policies)] = "300/minute burst 60"
    # Route template (optionally "METHOD /api/...") -> policies replacing the default; "" = unlimited.
    rate_limit_rules: Annotated[dict[str, str], AfterValidator(rate_limits.check_rules)] = Field(
        default_factory=dict
    )
    rate_limit_exempt_paths: Annotated[list[str], AfterValidator(rate_limits.check_exempt_paths)] = Field(
        default_factory=lambda: list(rate_limits.DEFAULT_EXEMPT_PATHS)
    )
    rate_limit_on_store_error: Literal["open", "closed"] = "open"
    rate_limit_dry_run: bool = False
    # Proxies whose X-Forwarded-For uvicorn honours (CIDRs, comma-separated or JSON); never "*".
    ret_trusted_proxies: Annotated[
        list[str],
        NoDecode,
        BeforeValidator(rate_limits.split_networks),
        AfterValidator(rate_limits.normalize_networks),
    ] = Field(default_factory=list)

    # GET /api/metrics (Prometheus text). Off: the route answers 404. Readers: admins, and callers
    # sending "Authorization: Bearer <METRICS_BEARER_TOKEN>" when it is set (for the scraper).
    metrics_enabled: bool = True
    metrics_bearer_token: SecretStr | None = None
    # How often each process adds its cache and rate-limit counters to the shared metrics.
    metrics_sync_interval_seconds: float = Field(default=5, gt=0, le=3600, allow_inf_nan=False)
    # prometheus-client's directory for the values of several processes; `ret serve --workers N`
    # sets it (RET_RUNTIME_ROOT/metrics). Set it yourself, to an empty directory, only when starting
    # several workers some other way. Used as given: prometheus-client reads the same variable.
    prometheus_multiproc_dir: Path | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("ret_runtime_root", "ret_session_db", mode="after")
    @classmethod
    def _resolve_path(cls, value: Path) -> Path:
        return resolve_backend_path(value)

    @field_validator("database_url", mode="after")
    @classmethod
    def _resolve_sqlite_url(cls, value: str) -> str:
        if not value.startswith(SQLITE_URL_PREFIX) or value == SQLITE_URL_PREFIX + ":memory:":
            return value
        path = resolve_backend_path(Path(value.removeprefix(SQLITE_URL_PREFIX)))
        return SQLITE_URL_PREFIX + str(path)

    @model_validator(mode="after")
    def _production_needs_real_secret(self) -> Settings:
        if self.env == "production" and not is_usable_secret(self.jwt_secret_key):
            raise ValueError(
                "JWT_SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_LENGTH} characters in production (it is missing or a placeholder)"
            )
        return self


def workspace_idle_ttl(settings: Settings) -> float:
    """The idle expiry of workspace sessions (``WORKSPACE_IDLE_TTL_SECONDS``, else the cache TTL)."""
    return settings.workspace_idle_ttl_seconds or settings.session_cache_ttl_seconds


def resolve_backend_path(path: Path) -> Path:
    """Return ``path`` made absolute against the backend directory (``~`` expanded)."""
    path = path.expanduser()
    return path if path.is_absolute() else (BACKEND_DIR / path).resolve()


def is_usable_secret(secret: SecretStr | None) -> bool:
    """True when ``secret`` is long enough and not a well-known placeholder."""
    if secret is None:
        return False
    value = secret.get_secret_value()
    return len(value) >= MIN_SECRET_LENGTH and value.strip().lower() not in PLACEHOLDER_SECRETS


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and ``backend/.env``, plus explicit overrides.

    Raises:
        SettingsError: a value is invalid; the message names each bad setting in upper case.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per invalid setting, named as its environment variable."""
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
        lines.append(f"{name}: {error['msg']}")
    return "invalid configuration: " + "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once. Tests pass their own to ``create_app``."""
    return load_settings()


def resolve_jwt_secret(settings: Settings) -> SecretStr:
    """The signing key: the configured one, or in development/testing one kept under the runtime root.

    The generated key is written once with mode 0600 and reused by every process and restart, so
    tokens stay valid across workers.
    """
    if is_usable_secret(settings.jwt_secret_key):
        assert settings.jwt_secret_key is not None
        return settings.jwt_secret_key
    if settings.env == "production":
        raise SettingsError("JWT_SECRET_KEY: missing or a placeholder in production")
    path = settings.ret_runtime_root / DEV_SECRET_FILENAME
    if not path.exists():
        _write_new_secret(path)
    return SecretStr(path.read_text(encoding="utf-8").strip())


def _write_new_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when several workers start at once, exactly one writes the key; the rest read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(48))
    logger.warning("JWT_SECRET_KEY not set: generated a development key at %s", path)


def warn_ignored_variables() -> list[str]:
    """Log one warning per obsolete variable present in the environment; return their names."""
    present = [name for name in IGNORED_VARIABLES if name in os.environ]
    for name in present:
        logger.warning(
            "%s is set but ignored: ephemeral state lives in the embedded SQLite session store "
            "(RET_SESSION_DB)",
            name,
        )
    return present
