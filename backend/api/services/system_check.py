"""End-to-end checks of a deployment, behind ``ret validate`` and ``tests/validate_system.py``.

Each check returns a one-line detail on success and raises ``CheckFailed`` (or any exception) on
failure. A failing check never stops the others; checks that need settings are skipped (and count
as failed) when the settings do not load.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

from api.core.config import Settings, SettingsError, load_settings
from api.core.session_cache import SessionCache
from api.services.health_service import check_directory_writable

MIN_PYTHON = (3, 11)


class CheckFailed(Exception):
    """A check's own verdict that the deployment is not usable, with the reason."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


SettingsCheck = Callable[[Settings], str]


def check_python() -> str:
    version = sys.version_info
    found = f"{version.major}.{version.minor}.{version.micro}"
    if version[:2] < MIN_PYTHON:
        raise CheckFailed(f"Python {found} is older than {MIN_PYTHON[0]}.{MIN_PYTHON[1]}")
    return f"Python {found}"


def check_required_settings(settings: Settings) -> str:
    required = {
        "RET_RUNTIME_ROOT": str(settings.ret_runtime_root),
        "RET_SESSION_DB": str(settings.ret_session_db),
        "DATABASE_URL": settings.database_url,
    }
    missing = [name for name, value in required.items() if not value.strip()]
    if missing:
        raise CheckFailed("missing: " + ", ".join(missing))
    return f"RET_SESSION_DB={settings.ret_session_db} (REDIS_URL not needed)"


def check_runtime_root(settings: Settings) -> str:
    root = settings.ret_runtime_root
    root.mkdir(parents=True, exist_ok=True)
    check_directory_writable(root)
    return f"{root} is writable"


def check_session_cache(settings: Settings) -> str:
    """Write, read, expire, delete and prefix-clear throwaway keys on the configured store."""
    clock = _SteppedClock()
    cache = SessionCache.from_settings(settings, clock=clock)
    prefix = f"validate:{uuid.uuid4().hex}:"
    try:
        cache.set(prefix + "value", {"ok": True}, ttl_seconds=60)
        cache.set(prefix + "short", "expires", ttl_seconds=1)
        if cache.get(prefix + "value") != {"ok": True}:
            raise CheckFailed("a value written could not be read back")
        clock.advance(2)
        if cache.get(prefix + "short") is not None:
            raise CheckFailed("an expired entry was returned")
        if not cache.delete(prefix + "value"):
            raise CheckFailed("delete did not find the entry just written")
        cache.set_many({prefix + "a": 1, prefix + "b": 2})
        if cache.clear_pattern(prefix) != 2 or cache.keys(prefix):
            raise CheckFailed("prefix clear left entries behind")
    finally:
        cache.clear_pattern(prefix)
        cache.close()
    return f"read/write/TTL/delete/prefix clear ok on {settings.ret_session_db}"


class _SteppedClock:
    """Wall-clock time plus an offset, so TTL expiry is checked without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def __call__(self) -> float:
        return time.time() + self.offset


def check_app_health(settings: Settings) -> str:
    # Imported here: the app (and its test client) is only needed by this check.
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(settings)) as client:
        response = client.get("/api/health")
    if response.status_code != 200:
        raise CheckFailed(f"/api/health answered {response.status_code}: {response.text[:200]}")
    return "/api/health answered 200 in-process"


SETTINGS_CHECKS: list[tuple[str, SettingsCheck]] = [
    ("required settings", check_required_settings),
    ("runtime root writable", check_runtime_root),
    ("session cache", check_session_cache),
    ("app answers /api/health", check_app_health),
]


def run_checks(settings_factory: Callable[[], Settings] = load_settings) -> list[CheckResult]:
    """Run every check in order and return each outcome."""
    results = [_run("python version", check_python)]
    try:
        settings = settings_factory()
    except SettingsError as exc:
        results.append(CheckResult("settings load", False, str(exc)))
        skipped = "skipped: settings did not load"
        results += [CheckResult(name, False, skipped) for name, _ in SETTINGS_CHECKS]
        return results
    results.append(CheckResult("settings load", True, f"env={settings.env}"))
    for name, check in SETTINGS_CHECKS:
        results.append(_run(name, partial(check, settings)))
    return results


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except Exception as exc:
        reason = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
        return CheckResult(name, False, reason)


def render_text(results: list[CheckResult]) -> str:
    lines = [f"{'✅' if result.ok else '❌'} {result.name}: {result.detail}" for result in results]
    failed = sum(not result.ok for result in results)
    verdict = "all checks passed" if not failed else f"{failed} of {len(results)} checks failed"
    lines.append(verdict)
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> list[dict[str, object]]:
    return [asdict(result) for result in results]
