"""Run checks in order: each one isolated, none skipped silently."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial

from api.core.config import ENV_FILE, Settings, SettingsError
from api.services.system_checks.base import Check, CheckFailed, CheckResult

PYTHON = "python version"
CONFIGURATION = "configuration loads"
MIN_PYTHON = (3, 11)


def run_checks(checks: Sequence[Check], settings_factory: Callable[[], Settings]) -> list[CheckResult]:
    """The Python version, then the configuration, then every check in order.

    A check whose ``needs`` did not all pass is reported as failed ("not run") instead of running.
    """
    results = [attempt(PYTHON, check_python)]
    try:
        settings = settings_factory()
    except SettingsError as exc:
        fix = f"fix the named setting in the environment or {ENV_FILE}"
        results.append(CheckResult(CONFIGURATION, False, f"{exc}; {fix}"))
        return results + [
            CheckResult(check.name, False, "not run: the configuration did not load") for check in checks
        ]
    results.append(CheckResult(CONFIGURATION, True, _configuration_detail(settings)))
    passed = {result.name for result in results if result.ok}
    for check in checks:
        missing = [name for name in check.needs if name not in passed]
        if missing:
            result = CheckResult(check.name, False, f"not run: needs {', '.join(missing)} to pass first")
        else:
            result = attempt(check.name, partial(check.run, settings))
        results.append(result)
        if result.ok:
            passed.add(check.name)
    return results


def attempt(name: str, check: Callable[[], str]) -> CheckResult:
    """Run one check; any exception becomes a failed result (never a traceback)."""
    try:
        return CheckResult(name, True, check())
    except Exception as exc:
        reason = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
        return CheckResult(name, False, " ".join(reason.split()))  # one line, whatever the error said


def check_python() -> str:
    version = sys.version_info
    found = f"{version.major}.{version.minor}.{version.micro}"
    if version[:2] < MIN_PYTHON:
        needed = ".".join(map(str, MIN_PYTHON))
        raise CheckFailed(f"Python {found} is older than {needed}: run the API with Python {needed} or newer")
    return f"Python {found}"


def _configuration_detail(settings: Settings) -> str:
    source = f"environment and {ENV_FILE}" if ENV_FILE.is_file() else "environment (no .env file)"
    return f"env={settings.env}, from the {source}"
