"""Benchmark XML → CSV conversion against the do-it-yourself route and the lxml parse floor (issue 8).

Run from ``backend/``::

    .venv/bin/python benchmarks/bench_conversion.py [--quick] [--runs 3] [--json PATH]

Two generated corpora (``crossref_corpus``): thousands of 1–15 KB Crossref-style deposits, a quarter
plain, the rest in ZIPs nested up to three deep; and a few large deposits. Every route
(``conversion_peers``) runs ``--runs`` times per corpus, each time in a fresh process so its peak
resident memory is its own; the table shows the median wall time, MB/s of XML, the ratios, and the
issue's targets with PASS/FAIL. A report, not a test: it exits 0 whatever it finds. Figures move
with the load of a shared machine: run it when ``uptime`` shows a load below 1, and compare runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import conversion_peers
from crossref_corpus import write_corpus
from harness import machine_description, markdown_table

ROUTES = {
    "floor": "lxml iterparse (floor)",
    "diy": "xmltodict + json_normalize + to_csv",
    "one": "RET, one process",
    "pool": "RET, pool of 2 processes",
}
CORPORA = {  # name: (small files, large file sizes), full and --quick
    "small files": ((3000, ()), (300, ())),
    "large files": ((0, (25 << 20,) * 3), (0, (3 << 20,) * 2)),
}
TARGET_MB_S = 12.0
TARGET_SPEEDUP = 1.5
TARGET_RSS_MB = 250.0


def measure_once(route: str, upload_dir: Path, scratch: Path) -> dict[str, Any]:
    """One run of ``route`` in a fresh interpreter; its wall time and peak RSS (MB)."""
    command = [sys.executable, __file__, "--child", route, str(upload_dir), str(scratch)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def child(route: str, upload_dir: Path, scratch: Path) -> None:
    result = conversion_peers.run(route, upload_dir, scratch)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = (
        json.loads(result.pop("manifest"))["worker_peak_rss_bytes"] / 2**20 if "manifest" in result else 0
    )
    print(json.dumps({**result, "rss_mb": own, "worker_rss_mb": workers}))


def measure(route: str, upload_dir: Path, scratch: Path, runs: int) -> dict[str, Any]:
    samples = [measure_once(route, upload_dir, scratch / f"{route}-{n}") for n in range(runs)]
    return {
        "seconds": statistics.median(sample["seconds"] for sample in samples),
        "all_seconds": [round(sample["seconds"], 3) for sample in samples],
        "rss_mb": max(sample["rss_mb"] for sample in samples),
        "worker_rss_mb": max(sample["worker_rss_mb"] for sample in samples),
    }


def corpus_table(name: str, facts: dict[str, Any]) -> str:
    results, megabytes = facts["routes"], facts["xml_bytes"] / 1e6
    diy, floor = results["diy"]["seconds"], results["floor"]["seconds"]
    rows = []
    for route, label in ROUTES.items():
        seconds = results[route]["seconds"]
        rss = max(results[route]["rss_mb"], results[route]["worker_rss_mb"])
        rows.append(
            [
                label,
                f"{seconds:.2f} s",
                f"{megabytes / seconds:.1f}",
                f"{floor / seconds:.2f}×",
                f"{diy / seconds:.2f}×",
                f"{rss:.0f} MB",
            ]
        )
    heading = f"## {name}: {facts['files']} XML files, {megabytes:.1f} MB of XML"
    table = markdown_table(["route", "median", "MB/s", "vs floor", "vs DIY", "peak RSS/process"], rows)
    return f"{heading}\n\n{table}"


def targets(corpora: dict[str, dict[str, Any]]) -> list[list[str]]:
    small = corpora["small files"]
    routes, megabytes = small["routes"], small["xml_bytes"] / 1e6
    one = megabytes / routes["one"]["seconds"]
    speedups = {
        name: facts["routes"]["one"]["seconds"] / facts["routes"]["pool"]["seconds"]
        for name, facts in corpora.items()
    }
    rss = max(
        max(r["rss_mb"], r["worker_rss_mb"])
        for f in corpora.values()
        for k, r in f["routes"].items()
        if k in ("one", "pool")
    )
    verdict = lambda passed: "PASS" if passed else "FAIL"  # noqa: E731
    return [
        [
            f"≥ {TARGET_MB_S:g} MB/s, one process, small files",
            f"{one:.1f} MB/s ({routes['diy']['seconds'] / routes['one']['seconds']:.2f}× DIY)",
            verdict(one >= TARGET_MB_S),
        ],
        *[
            [
                f"≥ {TARGET_SPEEDUP}× from the pool on 2 cores, {name}",
                f"{value:.2f}×",
                verdict(value >= TARGET_SPEEDUP),
            ]
            for name, value in speedups.items()
        ],
        [f"peak RSS ≤ {TARGET_RSS_MB:g} MB per process", f"{rss:.0f} MB", verdict(rss <= TARGET_RSS_MB)],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpora: a smoke run, not figures")
    parser.add_argument("--runs", type=int, default=3, help="runs per route (the median is shown)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        route, upload_dir, scratch = arguments.child
        child(route, Path(upload_dir), Path(scratch))
        return
    machine = machine_description()
    print(
        "# XML → CSV conversion\n\n" + "\n".join(f"- {key}: {value}" for key, value in machine.items()) + "\n"
    )
    corpora: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-conversion-") as temporary:
        for name, sizes in CORPORA.items():
            files, large = sizes[1] if arguments.quick else sizes[0]
            upload_dir = Path(temporary) / name.replace(" ", "-")
            size = write_corpus(upload_dir, files=files, large=large)
            routes = {
                route: measure(route, upload_dir, Path(temporary) / "scratch", arguments.runs)
                for route in ROUTES
            }
            corpora[name] = {"files": size.files, "xml_bytes": size.xml_bytes, "routes": routes}
            print(corpus_table(name, corpora[name]) + "\n", flush=True)
    verdicts = targets(corpora)
    print("## Targets\n\n" + markdown_table(["target", "measured", "result"], verdicts))
    if arguments.json:
        arguments.json.write_text(
            json.dumps({"machine": machine, "corpora": corpora, "targets": verdicts}, indent=1)
        )


if __name__ == "__main__":
    main()
