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


def test_server_cpu_is_read_from_proc_and_tabled_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.syspath_prepend(str(BACKEND_DIR / "benchmarks"))
    import bench_rate_limit

    before = bench_rate_limit.server_cpu_seconds(os.getpid())
    assert before is not None
    sum(range(3_000_000))  # some CPU for this process
    after = bench_rate_limit.server_cpu_seconds(os.getpid())
    assert after is not None
    assert after > before
    assert bench_rate_limit.server_cpu_seconds(2**22 + 12345) is None  # no such process
    table = bench_rate_limit.cpu_table(["limiter", "run 1", "median"], {"off": [150.0], "on": [200.0]})
    assert "| off ÷ on |    75% |    75% |" in table
