"""End-to-end checks of a deployment, behind ``ret validate`` and ``tests/validate_system.py``.

Every check names itself and yields one ✅/❌ line whose detail says what to do. A failing check
never stops the others; one whose ``needs`` failed is reported as not run. Validating repairs
nothing it reports: it never applies migrations (the record store is opened without them, and the
app is only started once its schema is current), and it writes nowhere it has not first proven
writable. What it does create is what the API creates on a first start: the runtime root and an
empty session database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from api.core.config import Settings, load_settings
from api.services.system_checks import runner
from api.services.system_checks.base import Check, CheckFailed, CheckResult, render_json, render_text
from api.services.system_checks.configuration import check_required_settings
from api.services.system_checks.filesystem import check_disk_space, check_local_filesystem, check_runtime_root
from api.services.system_checks.record_store import check_record_store
from api.services.system_checks.round_trips import (
    check_auth_round_trip,
    check_job_round_trip,
    check_rate_limiter,
)
from api.services.system_checks.session_store import check_session_store, check_sqlite_pragmas

__all__ = ["CHECKS", "Check", "CheckFailed", "CheckResult", "render_json", "render_text", "run_checks"]

RUNTIME_ROOT, SESSION_STORE, RECORD_STORE = "runtime root", "session store", "record store"
CHECKS: Final = (
    Check("required settings", check_required_settings),
    Check(RUNTIME_ROOT, check_runtime_root),
    Check("local filesystem", check_local_filesystem),
    Check("disk space", check_disk_space),
    Check(SESSION_STORE, check_session_store),
    Check("sqlite version and pragmas", check_sqlite_pragmas, needs=(SESSION_STORE,)),
    Check(RECORD_STORE, check_record_store),
    Check("rate limiter", check_rate_limiter, needs=(SESSION_STORE,)),
    Check("job round trip", check_job_round_trip, needs=(RECORD_STORE,)),
    # The app's start-up would migrate the record store and build the session store: never before
    # those checks passed.
    Check("auth round trip", check_auth_round_trip, needs=(RUNTIME_ROOT, SESSION_STORE, RECORD_STORE)),
)


def run_checks(settings_factory: Callable[[], Settings] = load_settings) -> list[CheckResult]:
    """Run every check in order and return each outcome."""
    return runner.run_checks(CHECKS, settings_factory)
