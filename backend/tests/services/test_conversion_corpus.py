"""A 200 MB generated corpus (nested ZIPs, thousands of files, three large deposits) converts with
bounded memory, and a second run — on a pool of processes this time — writes identical tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.services.archive_scan import ScanLimits
from benchmarks.crossref_corpus import write_corpus
from tests.support.memory import peak_rss_growth
from tests.support.workspace import Workspace

CORPUS_BYTES = 200 * 1000 * 1000
MAX_RSS_GROWTH = 300 * 1024 * 1024
LIMITS = ScanLimits(
    max_depth=5, max_files=20_000, max_total_bytes=2 << 30, max_file_bytes=512 << 20, max_ratio=200
)
VARYING = (
    "started_at",
    "finished_at",
    "duration_seconds",
    "phase_seconds",
    "cpu_seconds",
    "processes",
    "worker_peak_rss_bytes",
)


@pytest.mark.slow
def test_a_200_mb_corpus_converts_in_bounded_memory_and_identically_twice(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    size = write_corpus(workspace.area("input"), files=16_000, unique=1500, large=(35 << 20,) * 3)
    assert size.xml_bytes >= CORPUS_BYTES

    with peak_rss_growth() as growth:
        first = workspace.convert(limits=LIMITS, processes=1)
    first_outputs = workspace.outputs()
    second = workspace.convert(limits=LIMITS, processes=2)
    second_outputs = workspace.outputs()

    assert growth.bytes < MAX_RSS_GROWTH
    manifests = [json.loads(outputs.pop("manifest.json")) for outputs in (first_outputs, second_outputs)]
    assert manifests[1]["processes"] == 2
    assert all(
        manifest["worker_peak_rss_bytes"] < MAX_RSS_GROWTH + 100 * 1024 * 1024 for manifest in manifests
    )
    for manifest in manifests:
        for key in VARYING:
            manifest.pop(key)
    assert manifests[0] == manifests[1]
    assert first_outputs == second_outputs
    assert first["summary"] == second["summary"]
    assert first["summary"]["converted"] == size.files
    assert first["summary"]["failed"] == 0
