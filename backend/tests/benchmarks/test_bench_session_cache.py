"""``benchmarks/bench_session_cache.py`` runs end to end at its smoke size. Figures are not checked:
it is a report, and timings on a shared machine are no test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKEND_DIR

SCRIPT = BACKEND_DIR / "benchmarks" / "bench_session_cache.py"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # port 1: nothing listens, the connection is refused
HEADINGS = ("## Median µs per operation", "## Operations per second", "## Processes", "## Targets")


def run_quick(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--quick", "--skip-1m", "--json", str(tmp_path / "out.json")]
    return subprocess.run(
        [*command, *options], cwd=BACKEND_DIR, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_quick_run_prints_every_table_and_a_verdict_per_target(tmp_path: Path) -> None:
    result = run_quick(tmp_path)

    assert result.returncode == 0, result.stderr
    assert all(heading in result.stdout for heading in HEADINGS), result.stdout
    assert "| get (L1 hit)" in result.stdout
    targets = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["targets"]
    assert len(targets) == 15
    assert all(target["result"].startswith(("PASS", "FAIL", "n/a", "skipped")) for target in targets)


@pytest.mark.slow
def test_unreachable_redis_is_reported_unavailable_and_the_run_still_succeeds(tmp_path: Path) -> None:
    result = run_quick(tmp_path, "--redis-url", UNREACHABLE_REDIS)

    assert result.returncode == 0, result.stderr
    assert "unavailable" in result.stdout
    assert "n/a (redis-py unavailable)" in result.stdout
    assert "## Targets" in result.stdout
