"""The ``conversion.run`` task: registered for the process pool; errors a retry cannot fix end the
job at once (``JobFailed``). Running it end to end is in tests/routers/test_conversions_router.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from api.core.config import Settings
from api.workers.conversion_task import CONVERSION_TASK, run_conversion
from api.workers.errors import JobFailed
from api.workers.registry import registry
from tests.conftest import make_settings


@dataclass
class FakeContext:
    """What the task uses of a ``JobContext``."""

    settings: Settings | None
    session_id: str | None
    reports: list[tuple[float, str | None]] = field(default_factory=list)

    def progress(self, percent: float, message: str | None = None) -> None:
        self.reports.append((percent, message))


def test_the_task_runs_on_the_process_pool() -> None:
    spec = registry.get(CONVERSION_TASK)
    assert spec is not None
    assert spec.executor == "process"


def test_a_session_that_is_gone_fails_without_retry(tmp_path: Path) -> None:
    context = FakeContext(make_settings(tmp_path), "0" * 32)
    with pytest.raises(JobFailed, match="workspace session not found"):
        run_conversion(context, ["csv"])  # type: ignore[arg-type]


def test_a_job_without_session_fails_without_retry(tmp_path: Path) -> None:
    with pytest.raises(JobFailed, match="workspace session"):
        run_conversion(FakeContext(make_settings(tmp_path), None), ["csv"])  # type: ignore[arg-type]
