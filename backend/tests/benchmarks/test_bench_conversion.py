"""``benchmarks/bench_conversion.py`` runs end to end on its quick corpora. Figures are not checked:
it is a report, and timings on a shared machine are no test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKEND_DIR

SCRIPT = BACKEND_DIR / "benchmarks" / "bench_conversion.py"


@pytest.mark.slow
def test_a_quick_run_prints_every_route_and_a_verdict_per_target(tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPT), "--quick", "--runs", "1", "--json", str(tmp_path / "out.json")]
    result = subprocess.run(
        command, cwd=BACKEND_DIR, capture_output=True, text=True, timeout=300, check=False
    )

    assert result.returncode == 0, result.stderr
    for heading in ("## small files", "## large files", "## Targets"):
        assert heading in result.stdout
    for route in (
        "lxml iterparse (floor)",
        "xmltodict + json_normalize + to_csv",
        "RET, one process",
        "RET, pool",
    ):
        assert route in result.stdout
    targets = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))["targets"]
    assert len(targets) == 4
    assert all(verdict in ("PASS", "FAIL") for _, _, verdict in targets)
