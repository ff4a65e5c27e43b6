"""Benchmark SessionCache against Redis, diskcache, cachetools and the pre-migration design (issue 3).

Run from ``backend/``::

    .venv/bin/python benchmarks/bench_session_cache.py [--quick] [--skip-1m] [--json PATH]

Prints the machine, then the median µs/op and ops/s of every store (``cache_peers`` describes them)
for each operation, beside the SQLite floor measured in the same run; SessionCache at 10k vs 1M keys;
1, 2 and 4 processes incrementing shared counters; and the issue's targets as ratios with PASS/FAIL.
Absolute figures vary about 2× between runs on shared machines; the ratios hold because competitors
are sampled interleaved (``harness``). A report, not a test: it exits 0 whatever it finds, and a peer
that cannot run (Redis unreachable) shows as "unavailable". Every store lives in a temporary directory
removed at the end; Redis keys live under a namespace of this process that is deleted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import report_session_cache as report
from cache_peers import (
    L1_SIZE,
    PreMigrationCache,
    RawSQLite,
    Store,
    connect_redis,
    diskcache_store,
    open_session_cache,
    redis_store,
    session_cache_store,
    ttlcache_store,
)
from harness import Plan, Sampler, Timing, machine_description, measure_interleaved, time_calls
from incr_contest import run_contest
from report_session_cache import (
    DELETE,
    DISKCACHE,
    FLOOR,
    INCR,
    L1_HIT,
    L1_MISS,
    L2,
    MISS,
    OURS,
    PRE_MIGRATION,
    PRE_MIGRATION_HELD,
    REDIS,
    SET,
    TTLCACHE,
)

from api.core import session_cache as session_cache_module
from api.core.session_cache import SessionCache

RECORD = {"user_id": 42, "role": "user", "created": 1700000000.0, "name": "workspace"}
TTLCACHE_SIZE = 1_000_000
PROCESS_COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class Sizes:
    """How big a run is: ``FULL`` for the figures, ``QUICK`` for a smoke run."""

    name: str
    point: Plan  # point operations and the 10k/1M comparison
    prefix: Plan  # one prefix delete per sample
    keys: int  # entries in every store for the point operations
    prefix_groups: int  # groups of ``group_size`` keys sharing a prefix
    group_size: int
    big_keys: int  # the "1M" of the 10k/1M comparison
    incr_per_process: int
    counters: int = 100


FULL = Sizes(
    "full",
    point=Plan(
        ops_per_sample=1000, min_ops=50, sample_seconds=0.25, min_samples=7, max_samples=40, budget_seconds=4
    ),
    prefix=Plan(
        ops_per_sample=1, min_ops=1, sample_seconds=1, min_samples=7, max_samples=25, budget_seconds=6
    ),
    keys=10_000,
    prefix_groups=100,
    group_size=1000,
    big_keys=1_000_000,
    incr_per_process=10_000,
)
QUICK = Sizes(
    "quick",
    point=Plan(
        ops_per_sample=100, min_ops=5, sample_seconds=0.02, min_samples=3, max_samples=5, budget_seconds=0.1
    ),
    prefix=Plan(
        ops_per_sample=1, min_ops=1, sample_seconds=1, min_samples=3, max_samples=4, budget_seconds=0.2
    ),
    keys=2_000,
    prefix_groups=10,
    group_size=200,
    big_keys=50_000,
    incr_per_process=300,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the competitors ------------------------------------------------------------------------------


@dataclass
class Field:
    """Every competitor that could be opened, and why the others could not."""

    stores: dict[str, Store]
    unavailable: dict[str, str]

    def fill(self, items: Mapping[str, Any], group: str = "") -> None:
        for name, store in list(self.stores.items()):
            try:
                store.fill(items, group)
            except Exception as exc:
                self.unavailable[name] = f"fill failed: {type(exc).__name__}: {exc}"
                close_quietly(name, self.stores.pop(name))

    def close(self) -> None:
        for name, store in self.stores.items():
            close_quietly(name, store)


def close_quietly(name: str, store: Store) -> None:
    """Close ``store``; a failure (Redis gone away) is logged, never raised over the results."""
    try:
        store.close()
    except Exception as exc:
        log(f"closing {name} failed: {type(exc).__name__}: {exc}")


def open_field(directory: Path, redis_client: Any, redis_reason: str, *, tagged: bool) -> Field:
    directory.mkdir(parents=True, exist_ok=True)
    openers: dict[str, Callable[[], Store]] = {
        OURS: lambda: session_cache_store(open_session_cache(directory / "session.db")),
        FLOOR: lambda: RawSQLite(directory / "floor.db").store(),
        REDIS: lambda: redis_store(redis_client, directory.name),
        DISKCACHE: lambda: diskcache_store(directory / "diskcache", tagged=tagged),
        TTLCACHE: lambda: ttlcache_store(TTLCACHE_SIZE),
        PRE_MIGRATION: lambda: PreMigrationCache(directory / "pre_migration.db").store(),
        PRE_MIGRATION_HELD: lambda: PreMigrationCache(
            directory / "pre_migration_held.db", held_open=True
        ).store(),
    }
    field = Field({}, {})
    for name, opener in openers.items():
        if name == REDIS and redis_client is None:
            field.unavailable[name] = redis_reason
            continue
        try:
            field.stores[name] = opener()
        except Exception as exc:
            field.unavailable[name] = f"{type(exc).__name__}: {exc}"
    return field


# -- samplers ---------------------------------------------------------------------------------------


def chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def calls(operation: Callable[[str], object], batches: Sequence[Sequence[str]]) -> Sampler:
    """Sample ``i`` calls ``operation`` on the keys of batch ``i`` (cycling)."""
    return lambda index, size: time_calls(operation, batches[index % len(batches)][:size])


def record_setter(store_set: Callable[[str, Any], Any]) -> Callable[[str], object]:
    return lambda key: store_set(key, RECORD)


def deletes(store: Store) -> Sampler:
    """Delete keys that exist, stored (untimed) just before."""

    def sample(index: int, size: int) -> int:
        doomed = [f"doomed:{index}:{number:04d}" for number in range(size)]
        store.fill(dict.fromkeys(doomed, RECORD), "")
        return time_calls(store.delete, doomed)

    return sample


def prefix_deletes(store: Store, groups: Sequence[Mapping[str, Any]]) -> Sampler:
    """Delete one group by its prefix, then put it back (untimed) so the store keeps its size."""

    def sample(index: int, size: int) -> int:
        group = index % len(groups)
        prefix = f"user:{group}:"
        elapsed = time_calls(store.delete_prefix, [prefix])
        store.fill(groups[group], prefix)
        return elapsed

    return sample


def random_calls(operation: Callable[[str], object], count: int) -> Sampler:
    """Call ``operation`` on keys drawn at random from ``numbered(0 .. count - 1)``."""
    return lambda index, size: time_calls(operation, [numbered(random.randrange(count)) for _ in range(size)])


def numbered(index: int) -> str:
    return f"session:{index:07d}"


# -- the phases -------------------------------------------------------------------------------------


def point_samplers(
    stores: Mapping[str, Store], l2_only: Store, keys: Sequence[str], batch: int
) -> dict[str, dict[str, Sampler]]:
    """Row → competitor → sampler. Every read uses the same random batches, except L1 hits: ``hot``
    fits in SessionCache's L1."""
    shuffled = random.sample(list(keys), len(keys))
    reads, hot = chunks(shuffled, batch), [shuffled[: min(batch, L1_SIZE)]]
    missing = chunks([f"missing:{index:06d}" for index in range(len(keys))], batch)
    counters = [[f"counter:{index:04d}" for index in range(batch)]]
    rows: dict[str, dict[str, Sampler]] = {row: {} for row in (L1_HIT, L2, L1_MISS, MISS, SET, INCR, DELETE)}
    for name, store in stores.items():
        if name == OURS:
            rows[L1_HIT][name] = calls(store.get, hot)
            rows[L2][name] = calls(l2_only.get, reads)
            # Each key comes back after all the others: it has always left L1 by then.
            rows[L1_MISS][name] = calls(store.get, reads)
        elif name == TTLCACHE:
            rows[L1_HIT][name] = calls(store.get, hot)
        else:
            rows[L2][name] = calls(store.get, reads)
        rows[MISS][name] = calls(store.get, missing)
        rows[SET][name] = calls(record_setter(store.set), reads)
        rows[INCR][name] = calls(store.incr, counters)
        rows[DELETE][name] = deletes(store)
    return rows


def run_point_operations(
    directory: Path, sizes: Sizes, redis_client: Any, redis_reason: str
) -> tuple[dict[str, dict[str, Timing | str]], dict[str, str]]:
    field = open_field(directory / "point", redis_client, redis_reason, tagged=False)
    keys = [f"session:{index:06d}" for index in range(sizes.keys)]
    log(f"point operations: filling {len(field.stores)} stores with {len(keys):,} keys")
    field.fill(dict.fromkeys(keys, RECORD))
    l2_only = session_cache_store(open_session_cache(directory / "point" / "session.db", 0))
    for key in keys:  # its connection is new: load its page cache as the others' were by the fill
        l2_only.get(key)
    try:
        rows = point_samplers(field.stores, l2_only, keys, sizes.point.ops_per_sample)
        results = measure_rows(rows, sizes.point, "point operations")
    finally:
        l2_only.close()
        field.close()
    return results, field.unavailable


def run_prefix_delete(
    directory: Path, sizes: Sizes, redis_client: Any, redis_reason: str
) -> tuple[dict[str, Timing | str], dict[str, str]]:
    field = open_field(directory / "prefix", redis_client, redis_reason, tagged=True)
    groups = [
        {f"user:{group}:login:{number:04d}": RECORD for number in range(sizes.group_size)}
        for group in range(sizes.prefix_groups)
    ]
    log(f"prefix delete: filling {len(field.stores)} stores with {len(groups) * sizes.group_size:,} keys")
    for group, items in enumerate(groups):
        field.fill(items, f"user:{group}:")
    if OURS in field.stores:  # a full L1, as in a running worker: clear_pattern scans it
        every_key = [key for items in groups for key in items]
        for key in random.sample(every_key, min(L1_SIZE, len(every_key))):
            field.stores[OURS].get(key)
    try:
        log("prefix delete: measuring")
        samplers = {name: prefix_deletes(store, groups) for name, store in field.stores.items()}
        return measure_interleaved(samplers, sizes.prefix), field.unavailable
    finally:
        field.close()


def run_scaling(directory: Path, sizes: Sizes) -> dict[str, Any]:
    """get (L2) and set on random keys of a small and a big database, SessionCache beside the raw
    floor on the same file, all four interleaved."""
    counts = (sizes.keys, sizes.big_keys)
    rows: dict[str, dict[str, Sampler]] = {L2: {}, SET: {}}
    opened: list[Store] = []
    fill_rates = {}
    try:
        for count in counts:
            stores, fill_rates[count] = open_scaled(directory / f"scale-{count}.db", count, sizes.keys)
            opened += stores.values()
            for row, samplers in scaled_samplers(stores, count).items():
                rows[row] |= samplers
        results = measure_rows(rows, sizes.point, "10k vs 1M keys")
    finally:
        for store in opened:
            store.close()
    return {"keys": list(counts), "fill_keys_per_second": fill_rates, "rows": results}


def open_scaled(path: Path, count: int, warm: int) -> tuple[dict[str, Store], float]:
    """A database of ``count`` records, its fill rate, and three stores on it: ``main`` (L1 on),
    ``l2`` (L1 off) and ``floor``; the readers' new connections are warmed alike."""
    main, l2_only = open_session_cache(path), open_session_cache(path, 0)
    stores = {
        "main": session_cache_store(main),
        "l2": session_cache_store(l2_only),
        "floor": RawSQLite(path).store(),
    }
    log(f"10k vs 1M keys: filling {count:,} keys")
    fill_rate = fill_numbered(main, count)
    for index in range(min(count, warm)):
        stores["l2"].get(numbered(index))
        stores["floor"].get(numbered(index))
    return stores, fill_rate


def scaled_samplers(stores: Mapping[str, Store], count: int) -> dict[str, dict[str, Sampler]]:
    ours, floor = f"{OURS} {count:,}", f"floor {count:,}"
    return {
        L2: {ours: random_calls(stores["l2"].get, count), floor: random_calls(stores["floor"].get, count)},
        SET: {
            ours: random_calls(record_setter(stores["main"].set), count),
            floor: random_calls(record_setter(stores["floor"].set), count),
        },
    }


def measure_rows(
    rows: Mapping[str, Mapping[str, Sampler]], plan: Plan, phase: str
) -> dict[str, dict[str, Timing | str]]:
    results = {}
    for row, samplers in rows.items():
        log(f"{phase}: {row}")
        results[row] = measure_interleaved(samplers, plan)
    return results


def fill_numbered(cache: SessionCache, count: int, chunk: int = 10_000) -> float:
    """Store ``count`` records with ``set_many``; return keys per second."""
    start = time.perf_counter()
    for first in range(0, count, chunk):
        cache.set_many({numbered(index): RECORD for index in range(first, min(count, first + chunk))})
    return count / (time.perf_counter() - start)


def run_processes(directory: Path, sizes: Sizes) -> list[dict[str, Any]]:
    summaries = []
    for processes in PROCESS_COUNTS:
        log(f"processes: {processes} × {sizes.incr_per_process:,} incr on {sizes.counters} counters")
        summary: dict[str, Any] = {"processes": processes}
        for kind, label in ((OURS, "ours"), (FLOOR, "floor")):
            path = directory / f"incr-{processes}-{label}.db"
            summary[label] = run_contest(kind, path, processes, sizes.incr_per_process, sizes.counters)
        summaries.append(summary)
    return summaries


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--skip-1m", action="store_true", help="skip the 10k vs 1M keys comparison")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the Redis to compare with")
    return parser.parse_args(argv)


def describe(redis_client: Any) -> dict[str, str]:
    machine = machine_description()
    if redis_client is not None:
        try:
            machine["redis-server"] = str(redis_client.info("server").get("redis_version"))
        except Exception as exc:
            machine["redis-server"] = f"version unknown ({type(exc).__name__})"
    versions = []
    for package in ("redis", "diskcache", "cachetools", "orjson"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    machine["libraries"] = ", ".join(versions)
    # The code under test is often uncommitted: name the exact version measured.
    source = Path(session_cache_module.__file__ or "")
    machine["session_cache.py"] = f"sha256 {hashlib.sha256(source.read_bytes()).hexdigest()[:12]}"
    return machine


def run(args: argparse.Namespace, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    redis_client, redis_reason = connect_redis(args.redis_url)
    results: dict[str, Any] = {"machine": describe(redis_client), "run": sizes.name}
    report.print_header(results["machine"], run_description(sizes))
    point, unavailable = run_point_operations(workdir, sizes, redis_client, redis_reason or "")
    prefix, prefix_unavailable = run_prefix_delete(workdir, sizes, redis_client, redis_reason or "")
    results.update(operations=point, prefix_delete=prefix, unavailable={**unavailable, **prefix_unavailable})
    results["scaling"] = None if args.skip_1m else run_scaling(workdir, sizes)
    results["processes"] = run_processes(workdir, sizes)
    results["prefix_label"] = f"{sizes.group_size:,} of {sizes.group_size * sizes.prefix_groups:,}"
    results["targets"] = report.evaluate_targets(results)
    return results


def run_description(sizes: Sizes) -> str:
    plan = sizes.point
    return (
        f"{sizes.name}; {sizes.keys:,} keys per store; samples of up to {plan.ops_per_sample:,} operations "
        f"(at least {plan.min_ops} for slow stores), median of {plan.min_samples}–{plan.max_samples} "
        f"samples; SessionCache L1 of {L1_SIZE:,} entries"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    random.seed(3)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ret-bench-") as workdir:
        results = run(args, sizes, Path(workdir))
    report.print_report(results)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=Timing.as_json) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
