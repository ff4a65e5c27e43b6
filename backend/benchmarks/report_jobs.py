"""The tables ``bench_jobs.py`` prints, and issue 6's targets as PASS/FAIL."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from harness import format_ratio, format_us, markdown_table

OURS, HUEY, CELERY = "ours (SQLite)", "Huey SqliteHuey", "Celery + Redis"
NOTES = """\
- Enqueue: single submits, the job stored and nothing running, the systems taking turns every 100
  calls. The mean includes SQLite's WAL checkpoints (a write of the accumulated pages every ~1,000
  pages), which the median leaves out.
- Throughput: the enqueued backlog run by two worker processes of each system, one system at a time;
  jobs/s from the first task's start to the last one's. Ours: `ret worker --processes 2` (2 threads
  each); Huey: consumer `-w 2 -k process`; Celery: `--concurrency 2 --pool prefork`, results in Redis.
- Pickup: workers idle 0.1-0.3 s, then one job; submit → the task running. Huey's idle consumer polls
  at 0.1 s growing ×1.15 up to 10 s (its defaults); ours polls every 50 ms across processes and is
  woken at once inside the submitting process (the API's own workers).
- (n×) after a peer's figure: the peer ÷ ours for times, ours ÷ the peer for rates (above 1: ours
  is better)."""


def percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def enqueue_table(results: Mapping[str, Any]) -> str:
    enqueue = results["enqueue"]
    ours = enqueue.get(OURS)
    rows = []
    for name in (OURS, HUEY, CELERY):
        figure = enqueue.get(name)
        if figure is None:
            rows.append([name, results["unavailable"].get(name, "unavailable"), "", "", "", ""])
            continue
        ratio = "" if name == OURS or not ours else format_ratio(figure["median_us"] / ours["median_us"])
        rows.append(
            [name]
            + [format_us(figure[key]) for key in ("median_us", "p90_us", "p99_us", "mean_us")]
            + [ratio]
        )
    return markdown_table(["system", "median", "p90", "p99", "mean", "theirs ÷ ours (median)"], rows)


def workers_table(results: Mapping[str, Any]) -> str:
    runs = results["workers"]
    ours = runs.get(OURS, {}).get("jobs_per_second")
    rows = []
    for name in (OURS, HUEY, CELERY):
        run = runs.get(name)
        if run is None:
            rows.append([name, results["unavailable"].get(name, "unavailable"), "", "", "", "", ""])
            continue
        rate = run["jobs_per_second"]
        ratio = "" if name == OURS or not (ours and rate) else format_ratio(ours / rate)
        pickups = run["pickup_ms"]
        rows.append(
            [name, f"{run['jobs']:,}", _rate(rate), ratio]
            + [_ms(percentile(pickups, share)) for share in (0.5, 0.95)]
            + [_ms(max(pickups) if pickups else None)]
        )
    in_process = results["in_process_pickup_ms"]
    rows.append(
        ["ours, in the submitting process", "", "", ""]
        + [_ms(percentile(in_process, share)) for share in (0.5, 0.95)]
        + [_ms(max(in_process) if in_process else None)]
    )
    headers = ["system (2 worker processes)", "jobs", "jobs/s", "ours ÷ theirs", "pickup p50", "p95", "max"]
    return markdown_table(headers, rows)


def http_table(results: Mapping[str, Any]) -> str:
    held = results["http_held_seconds"]
    eager, ours = statistics.median(held["eager"]), statistics.median(held["ours"])
    rows = [
        [
            "v3: Celery task_always_eager",
            f"{eager * 1000:,.0f} ms",
            f"{eager * 1000:,.0f} ms (inside the request)",
        ],
        [
            "v4: jobs table + workers",
            f"{ours * 1000:,.1f} ms",
            f"{statistics.median(held['ours_job_done']) * 1000:,.0f} ms",
        ],
    ]
    table = markdown_table(["design (1-second job)", "request held", "job finished after"], rows)
    return table + f"\n\nThe old design holds the request {format_ratio(eager / ours)} as long."


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's benchmark targets, in its words, with the figures and PASS/FAIL."""
    enqueue = results["enqueue"].get(OURS)
    run = results["workers"].get(OURS, {})
    pickup = percentile(run.get("pickup_ms", []), 0.5)
    rate = run.get("jobs_per_second")
    held = statistics.median(results["http_held_seconds"]["ours"])
    return [
        _target(
            "enqueue median ≤ 300 µs",
            enqueue and format_us(enqueue["median_us"]),
            "300 µs",
            bool(enqueue) and enqueue["median_us"] <= 300,
        ),
        _target(
            "≥ 1,000 no-op jobs/s with 2 worker processes",
            _rate(rate),
            "1,000/s",
            bool(rate) and rate >= 1000,
        ),
        _target(
            "idle pickup p50 ≤ 50 ms (across processes)",
            _ms(pickup),
            "50 ms",
            pickup is not None and pickup <= 50,
        ),
        _target(
            "HTTP request returns before the 1-second job finishes",
            f"{held * 1000:,.1f} ms",
            "< 1,000 ms",
            held < 1.0,
        ),
    ]


def _target(label: str, figure: str | None, limit: str, passed: bool) -> dict[str, Any]:
    return {
        "target": label,
        "figure": figure or "missing",
        "limit": limit,
        "result": "PASS" if passed else "FAIL",
    }


def targets_table(targets: Sequence[Mapping[str, Any]]) -> str:
    rows = [[row["target"], row["figure"], row["limit"], row["result"]] for row in targets]
    return markdown_table(["target", "measured", "limit", "result"], rows)


def print_header(machine: Mapping[str, str], run: str) -> None:
    print("# Job queue benchmark (issue 6)\n")
    for key, value in machine.items():
        print(f"- {key}: {value}")
    print(f"- run: {run}\n")


def print_report(results: Mapping[str, Any]) -> None:
    print("## Enqueue\n\n" + enqueue_table(results))
    print("\n## Throughput and idle pickup\n\n" + workers_table(results))
    print("\n## HTTP request held for a 1-second job\n\n" + http_table(results))
    print("\n## Targets\n\n" + targets_table(results["targets"]))
    print("\n" + NOTES)
