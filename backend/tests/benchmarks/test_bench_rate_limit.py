"""``benchmarks/bench_rate_limit.py`` runs end to end at its smoke size. Figures are not checked:
it is a report, and timings on a shared machine are no test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKEND_DIR

SCRIPT = BACKEND_DIR / "benchmarks" / "bench_rate_limit.py"


@pytest.mark.slow
def test_quick_run_prints_the_latency_table_and_a_verdict_per_target(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--skip-http",
        "--skip-processes",
        "--json",
        str(tmp_path / "out.json"),
    ]
    result = subprocess.run(
        command, cwd=BACKEND_DIR, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "## hit() latency" in result.stdout
    assert "| ours, SQLite, 1 policy" in result.stdout
    assert "| limits moving window, memory" in result.stdout
    report = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [row["result"] in {"PASS", "FAIL", "skipped"} for row in report["targets"]] == [True] * 4
