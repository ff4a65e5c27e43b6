"""Benchmark XML → CSV conversion against the do-it-yourself route and the lxml parse floor (issue 8).

Run from ``backend/``::

    .venv/bin/python benchmarks/bench_conversion.py [--quick] [--runs 3] [--json PATH]

Two generated corpora (``crossref_corpus``): thousands of 1–15 KB Crossref-style deposits, a quarter
plain, the rest in ZIPs nested up to three deep; and a few large deposits. Every route
(``conversion_peers``) runs ``--runs`` times per corpus, interleaved, each time in a fresh process
so its peak resident memory is its own; the table shows the median wall time, MB/s of XML (median
and best run), the ratios, the median CPU time (the route's process while timed, plus the pool's
workers for RET's pool: a run slowed by waiting for a CPU shows in the wall time, not here), how
much of RET's time went to the scan (extracting the ZIPs to disk), and the issue's targets with
PASS/FAIL (on medians). A report, not a test: it exits 0 whatever it finds.
Figures move with the load of a shared machine: run it when ``uptime`` shows a load below 1, and
compare runs.

Every run's output stays until the whole benchmark ends. On an ext4 file system without a journal
(these machines), the kernel will not reuse an inode deleted in the last 60 s, or 5 minutes while
its inode table block is not yet written back (``recently_deleted()`` in ``fs/ext4/ialloc.c``), and
skipping them costs CPU per candidate: right after one run deleted its 3,000 extracted files,
creating files cost 0.7-1 ms each instead of 20-30 µs, and the next run's scan took 2-2.8 s instead
of 0.2 s (perf showed ``recently_deleted`` in every ``openat``). The runs measured each other's
clean-up, not the conversion. For the same reason the benchmark syncs, then waits ``--settle``
seconds (70) before its first run, and at least until ``RECENT_DELETION_SECONDS`` have passed since
the previous benchmark deleted its ~70,000 files (it leaves a mark file when it does): a new
directory goes to the block group with the most free inodes, the one those files just left, and
creating files there dirties its inode table again, which keeps the deleted inodes recent for the
full 5 minutes. Benchmarks started 1-2 minutes after the previous one scanned in 0.67-1.3 s against
0.30 s.

Each run starts after ``os.sync()`` (outside its clock): a run writes tens of MB (extracted files,
spools, tables), and the kernel writes dirty pages back some 30 s later, on a core that a later run
(of any route) was using.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
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
CLEANED_MARK = Path(tempfile.gettempdir()) / "ret-bench-conversion.cleaned"
RECENT_DELETION_SECONDS = 330.0  # ext4 without a journal: 300 s while the inode table is dirty


def measure_once(route: str, upload_dir: Path, scratch: Path) -> dict[str, Any]:
    """One run of ``route`` in a fresh interpreter; its wall time and peak RSS (MB)."""
    command = [sys.executable, __file__, "--child", route, str(upload_dir), str(scratch)]
    os.sync()  # the previous runs' writes go to disk now, not during this run
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def child(route: str, upload_dir: Path, scratch: Path) -> None:
    # Linux keeps the peak RSS across fork and exec: start counting from this process's own size,
    # not from the benchmark's (which held the corpus in memory).
    Path("/proc/self/clear_refs").write_text("5")
    result = conversion_peers.run(route, upload_dir, scratch)
    own = _peak_rss_mb()
    manifest = json.loads(result.pop("manifest", "{}"))
    workers = manifest.get("worker_peak_rss_bytes", 0) / 2**20
    result["cpu_seconds"] += manifest.get("cpu_seconds", {}).get("pool_workers", 0.0)
    print(
        json.dumps(
            {**result, "rss_mb": own, "worker_rss_mb": workers, "phases": manifest.get("phase_seconds")}
        )
    )


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(upload_dir: Path, scratch: Path, runs: int) -> dict[str, dict[str, Any]]:
    """Every route ``runs`` times, interleaved (run 1 of each, then run 2 of each, ...) so a burst
    of load from elsewhere hits all routes alike."""
    samples: dict[str, list[dict[str, Any]]] = {route: [] for route in ROUTES}
    for run in range(runs):
        for route in ROUTES:
            samples[route].append(measure_once(route, upload_dir, scratch / f"{route}-{run}"))
    return {route: _summary(route_samples) for route, route_samples in samples.items()}


def _summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(samples, key=lambda sample: sample["seconds"])
    return {
        "seconds": statistics.median(sample["seconds"] for sample in samples),
        "best_seconds": ordered[0]["seconds"],
        "all_seconds": [round(sample["seconds"], 3) for sample in samples],
        "cpu_seconds": statistics.median(sample["cpu_seconds"] for sample in samples),
        "phases": ordered[len(ordered) // 2]["phases"],  # of the median run (RET routes only)
        "rss_mb": max(sample["rss_mb"] for sample in samples),
        "worker_rss_mb": max(sample["worker_rss_mb"] for sample in samples),
    }


def corpus_table(name: str, facts: dict[str, Any]) -> str:
    results, megabytes = facts["routes"], facts["xml_bytes"] / 1e6
    diy, floor = results["diy"]["seconds"], results["floor"]["seconds"]
    rows = []
    for route, label in ROUTES.items():
        result = results[route]
        seconds, phases = result["seconds"], result["phases"]
        rows.append(
            [
                label,
                f"{seconds:.2f} s",
                f"{megabytes / seconds:.1f}",
                f"{megabytes / result['best_seconds']:.1f}",
                f"{floor / seconds:.2f}×",
                f"{diy / seconds:.2f}×",
                f"{result['cpu_seconds']:.2f} s",
                f"{phases['scan']:.2f} s" if phases else "-",
                f"{max(result['rss_mb'], result['worker_rss_mb']):.0f} MB",
            ]
        )
    heading = f"## {name}: {facts['files']} XML files, {megabytes:.1f} MB of XML"
    headers = [
        "route",
        "median",
        "MB/s",
        "best MB/s",
        "vs floor",
        "vs DIY",
        "CPU",
        "of which scan",
        "peak RSS/process",
    ]
    return f"{heading}\n\n{markdown_table(headers, rows)}"


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
            # Two decimals: 11.97 MB/s shown as "12.0" beside FAIL read as a contradiction.
            f"{one:.2f} MB/s ({routes['diy']['seconds'] / routes['one']['seconds']:.2f}× DIY)",
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


def _settle(seconds: float) -> None:
    """Write everything back, then wait ``seconds``, and longer if a previous benchmark deleted its
    files less than ``RECENT_DELETION_SECONDS`` ago (see the module's docstring)."""
    os.sync()
    since = time.time() - CLEANED_MARK.stat().st_mtime if CLEANED_MARK.exists() else float("inf")
    wait = max(seconds, RECENT_DELETION_SECONDS - since)
    if wait > seconds:
        print(f"(waiting {wait:.0f} s: the previous benchmark deleted its files {since:.0f} s ago)\n")
    time.sleep(wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpora: a smoke run, not figures")
    parser.add_argument("--runs", type=int, default=3, help="runs per route (the median is shown)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--settle", type=float, default=70.0, help="seconds to wait before the first run (see above)"
    )
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
            if not corpora and not arguments.quick:
                _settle(arguments.settle)
            routes = measure(upload_dir, Path(temporary) / "scratch", arguments.runs)
            corpora[name] = {"files": size.files, "xml_bytes": size.xml_bytes, "routes": routes}
            print(corpus_table(name, corpora[name]) + "\n", flush=True)
    CLEANED_MARK.touch()
    verdicts = targets(corpora)
    print("## Targets\n\n" + markdown_table(["target", "measured", "result"], verdicts))
    if arguments.json:
        arguments.json.write_text(
            json.dumps({"machine": machine, "corpora": corpora, "targets": verdicts}, indent=1)
        )


if __name__ == "__main__":
    main()
