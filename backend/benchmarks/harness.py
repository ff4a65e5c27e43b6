"""Timing and reporting helpers for the scripts in ``benchmarks/``.

A figure is the median, over many timed samples, of the time per operation. A sample is a batch of
calls timed with ``perf_counter_ns`` while the garbage collector is off (as ``timeit`` does), so a
collection or a slice lost to another process on a shared machine moves one sample, not the median.
A sample holds ``Plan.ops_per_sample`` operations, fewer for a store so slow that it would take
longer than ``Plan.sample_seconds`` (the per-operation median does not depend on the batch size).
Competitors are measured *interleaved* (sample 1 of each, then sample 2 of each, ...) so that a burst of
load from elsewhere hits all of them alike and the ratios between them hold.
"""

from __future__ import annotations

import gc
import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# A sampler times ``size`` operations of sample number ``index`` (0 is the warm-up) and returns the
# nanoseconds they took.
Sampler = Callable[[int, int], int]


@dataclass(frozen=True)
class Plan:
    """How many operations make a sample and how many samples make a figure."""

    ops_per_sample: int  # at most; a slow store's samples are cut to about ``sample_seconds``...
    min_ops: int  # ...but never below this
    sample_seconds: float
    min_samples: int
    max_samples: int
    budget_seconds: float  # per figure: past it, stop once ``min_samples`` are in


@dataclass(frozen=True)
class Timing:
    """The median time per operation of one measurement."""

    ns_per_op: float
    samples: int
    ops_per_sample: int

    @property
    def us(self) -> float:
        return self.ns_per_op / 1000

    @property
    def ops_per_second(self) -> float:
        return 1e9 / self.ns_per_op

    def as_json(self) -> dict[str, float]:
        return {
            "us_per_op": round(self.us, 3),
            "ops_per_second": round(self.ops_per_second),
            "samples": self.samples,
            "ops_per_sample": self.ops_per_sample,
        }


def time_calls(operation: Callable[[Any], object], arguments: Iterable[Any]) -> int:
    """Nanoseconds to call ``operation`` on each argument in turn, with the GC off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for argument in arguments:
            operation(argument)
        return time.perf_counter_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def measure_interleaved(samplers: Mapping[str, Sampler], plan: Plan) -> dict[str, Timing | str]:
    """Median time per operation of each sampler, sampled round-robin after a warm-up of each.

    A sampler that raises is dropped and reported as ``"failed: ..."`` instead of a timing, so one
    broken competitor never stops the run.
    """
    failures: dict[str, str] = {}
    sizes: dict[str, int] = {}
    per_op: dict[str, list[float]] = {name: [] for name in samplers}

    def take(name: str, index: int) -> None:
        try:
            if index == 0:
                sizes[name] = _sample_size(samplers[name], plan)
            else:
                per_op[name].append(samplers[name](index, sizes[name]) / sizes[name])
        except Exception as exc:
            failures[name] = f"failed: {type(exc).__name__}: {exc}"

    deadline = time.perf_counter() + plan.budget_seconds
    for index in range(plan.max_samples + 1):
        if index > plan.min_samples and time.perf_counter() > deadline:
            break
        for name in samplers:
            if name not in failures:
                take(name, index)
    return {
        name: failures.get(name) or Timing(statistics.median(values), len(values), sizes[name])
        for name, values in per_op.items()
    }


def _sample_size(sampler: Sampler, plan: Plan) -> int:
    """Warm up: time a few operations, then a sample of the size they suggest; size from that."""
    size = max(1, plan.ops_per_sample // 20)
    for _ in range(2):
        ns_per_op = max(1.0, sampler(0, size) / size)
        size = max(plan.min_ops, min(plan.ops_per_sample, int(plan.sample_seconds * 1e9 / ns_per_op)))
    return size


def machine_description() -> dict[str, str]:
    """CPU model, cores, OS, Python and SQLite versions, date and load: the header of every table."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load average at start": load,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table (first column left-aligned, the rest right-aligned), padded for terminals."""
    body = [list(row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *body, strict=False)]

    def line(cells: Sequence[str]) -> str:
        padded = [cells[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in body)])


def format_us(us: float) -> str:
    """Microseconds with about three significant digits."""
    if us >= 100:
        return f"{us:,.0f} µs"
    return f"{us:.1f} µs" if us >= 10 else f"{us:.2f} µs"


def format_rate(ops_per_second: float) -> str:
    return f"{ops_per_second:,.0f}/s"


def format_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    return f"{ratio:.1f}×" if ratio >= 10 else f"{ratio:.2f}×"
