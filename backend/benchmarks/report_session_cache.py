"""The tables ``bench_session_cache.py`` prints, and the issue's targets as PASS/FAIL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness import Timing, format_rate, format_ratio, format_us, markdown_table

OURS, FLOOR, REDIS, DISKCACHE, TTLCACHE, PRE_MIGRATION, PRE_MIGRATION_HELD = (
    "SessionCache",
    "sqlite3 floor",
    "redis-py",
    "diskcache",
    "TTLCache",
    "pre-migration",
    "pre-migration*",
)
COLUMNS = (OURS, FLOOR, REDIS, DISKCACHE, TTLCACHE, PRE_MIGRATION, PRE_MIGRATION_HELD)
L1_HIT, L2, L1_MISS, MISS, SET, INCR, DELETE, PREFIX = (
    "get (L1 hit)",
    "get (L2)",
    "get (L1 miss → L2)",
    "get miss",
    "set",
    "incr",
    "delete",
    "prefix delete",
)
NOTES = """\
- (n×): that store's time ÷ SessionCache's; above 1, SessionCache is faster.
- sqlite3 floor: raw sqlite3 on one persistent connection, the session_cache schema, WAL and
  synchronous=NORMAL. get (L2) is a primary-key SELECT, set an upsert, incr an increment upsert.
- get (L2): SessionCache with L1 off; get (L1 miss → L2): L1 on, every key long evicted.
- TTLCache.get returns the stored dict itself; SessionCache's L1 hit returns a copy.
- redis-py: one round trip per call (INCR without EXPIRE); diskcache: prefix delete is evict(tag).
- pre-migration: alone on its file, so closing each connection checkpoints the WAL (fsyncs);
  pre-migration*: the same while another connection holds the file open, as a second worker
  would. The targets use pre-migration, as issue 3 defines it."""


def timing(table: Mapping[str, Mapping[str, Timing | str]], row: str, column: str) -> Timing | None:
    value = table.get(row, {}).get(column)
    return value if isinstance(value, Timing) else None


# -- targets ----------------------------------------------------------------------------------------


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 3, in its own words, with the figures behind it and PASS/FAIL."""
    return [
        *operation_targets(results),
        prefix_target(results),
        *scaling_targets(results["scaling"]),
        *process_targets(results["processes"]),
    ]


def ratio_target(
    label: str, ours: Timing | None, peer: Timing | None, limit: float, *, faster: bool, missing: str
) -> dict[str, Any]:
    """``faster``: the peer's time ÷ ours must be ≥ ``limit``; else ours ÷ the peer's must be ≤ it."""
    if ours is None or peer is None:
        return {"target": label, "result": missing}
    ratio = peer.ns_per_op / ours.ns_per_op if faster else ours.ns_per_op / peer.ns_per_op
    return {
        "target": label,
        "ours": format_us(ours.us),
        "peer": format_us(peer.us),
        "ratio": round(ratio, 3),
        "shown": format_ratio(ratio) + (" faster" if faster else ""),
        "limit": f"≥ {limit:g}× faster" if faster else f"≤ {limit:g}×",
        "result": "PASS" if (ratio >= limit if faster else ratio <= limit) else "FAIL",
    }


def value_target(label: str, shown: str, limit: str, passed: bool) -> dict[str, Any]:
    return {"target": label, "ours": shown, "limit": limit, "result": "PASS" if passed else "FAIL"}


def why_missing(results: Mapping[str, Any], column: str) -> str:
    return f"n/a ({column} {'unavailable' if column in results['unavailable'] else 'failed'})"


def operation_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    ops = results["operations"]
    specs = [  # label, our row, peer column, peer row, limit, faster
        ("get (L2) within 1.6× of the raw SELECT", L2, FLOOR, L2, 1.6, False),
        ("get (L2) ≥ 10× faster than redis-py GET", L2, REDIS, L2, 10, True),
        ("get (L1 hit, dict copied) within 2× of TTLCache.get", L1_HIT, TTLCACHE, L1_HIT, 2, False),
        ("set within 2× of the raw upsert", SET, FLOOR, SET, 2, False),
        ("incr within 2× of the raw upsert", INCR, FLOOR, SET, 2, False),
        ("set ≥ 4× faster than redis-py SET", SET, REDIS, SET, 4, True),
        ("incr ≥ 4× faster than redis-py INCR", INCR, REDIS, INCR, 4, True),
        ("set ≥ 30× faster than pre-migration", SET, PRE_MIGRATION, SET, 30, True),
        ("incr ≥ 30× faster than pre-migration", INCR, PRE_MIGRATION, INCR, 30, True),
    ]
    targets = []
    for label, row, column, peer_row, limit, faster in specs:
        ours, peer = timing(ops, row, OURS), timing(ops, peer_row, column)
        missing = why_missing(results, column if ours else OURS)
        targets.append(ratio_target(label, ours, peer, limit, faster=faster, missing=missing))
    return targets


def prefix_target(results: Mapping[str, Any]) -> dict[str, Any]:
    label = f"prefix delete of {results['prefix_label'].replace(' of ', ' among ')} ≤ 5 ms"
    ours = timing({PREFIX: results["prefix_delete"]}, PREFIX, OURS)
    if ours is None:
        return {"target": label, "result": why_missing(results, OURS)}
    return value_target(label, f"{ours.us / 1000:.2f} ms", "≤ 5 ms", ours.us <= 5000)


def scaling_targets(scaling: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if scaling is None:
        return [
            {"target": f"1M keys: {row} within 1.5× of 10k", "result": "skipped (--skip-1m)"}
            for row in (L2, SET)
        ]
    small, big = (f"{OURS} {count:,}" for count in scaling["keys"])
    return [
        ratio_target(
            f"{big.split()[1]} keys: {row} within 1.5× of {small.split()[1]}",
            timing(scaling["rows"], row, big),
            timing(scaling["rows"], row, small),
            1.5,
            faster=False,
            missing="n/a (failed)",
        )
        for row in (L2, SET)
    ]


def process_targets(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    four = next(summary["ours"] for summary in summaries if summary["processes"] == 4)
    lost, errors, rate = four["lost"], four["errors"], four["ops_per_second"]
    return [
        value_target("4 processes: zero lost increments", str(lost), "0", lost == 0),
        value_target("4 processes: zero errors", str(errors), "0", errors == 0),
        value_target("4 processes: ≥ 25k incr/s in all", format_rate(rate), "≥ 25,000/s", rate >= 25_000),
    ]


# -- tables -----------------------------------------------------------------------------------------


def cell(value: Timing | str | None, ours: Timing | None, unavailable: bool, *, rate: bool) -> str:
    if unavailable:
        return "unavailable"
    if value is None:
        return "—"
    if isinstance(value, str):
        return "failed"
    if rate:
        return format_rate(value.ops_per_second)
    relative = f" ({format_ratio(value.ns_per_op / ours.ns_per_op)})" if ours and value is not ours else ""
    return format_us(value.us) + relative


def operations_table(results: Mapping[str, Any], *, rate: bool) -> str:
    table = {**results["operations"], PREFIX: results["prefix_delete"]}
    rows = []
    for row, timings in table.items():
        ours = timing(table, row, OURS)
        label = f"{PREFIX} ({results['prefix_label']})" if row == PREFIX else row
        unavailable = results["unavailable"]
        rows.append([label] + [cell(timings.get(c), ours, c in unavailable, rate=rate) for c in COLUMNS])
    return markdown_table(["operation", *COLUMNS], rows)


def scaling_table(scaling: Mapping[str, Any]) -> str:
    small, big = (f"{count:,}" for count in scaling["keys"])
    columns = [(L2, OURS), (L2, "floor"), (SET, OURS), (SET, "floor")]
    rows = []
    for count, label in zip(scaling["keys"], (small, big), strict=True):
        figures = [_figure(timing(scaling["rows"], row, f"{who} {label}")) for row, who in columns]
        rows.append([f"{label} keys", *figures, format_rate(scaling["fill_keys_per_second"][count])])
    ratios = [
        _ratio(timing(scaling["rows"], row, f"{who} {big}"), timing(scaling["rows"], row, f"{who} {small}"))
        for row, who in columns
    ]
    rows.append([f"{big} ÷ {small}", *ratios, ""])
    headers = ["database", "get (L2)", "raw SELECT", "set", "raw upsert", "set_many fill"]
    return markdown_table(headers, rows)


def _figure(value: Timing | None) -> str:
    return format_us(value.us) if value else "failed"


def _ratio(top: Timing | None, bottom: Timing | None) -> str:
    return format_ratio(top.ns_per_op / bottom.ns_per_op) if top and bottom else "n/a"


def processes_table(summaries: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for summary in summaries:
        ours, floor = summary["ours"], summary["floor"]
        rows.append(
            [
                str(summary["processes"]),
                f"{ours['increments']:,}",
                format_rate(ours["ops_per_second"]),
                str(ours["lost"]),
                str(ours["errors"]),
                format_rate(floor["ops_per_second"]),
                f"{floor['lost']} / {floor['errors']}",
            ]
        )
    headers = [
        "processes",
        "increments",
        "SessionCache incr/s",
        "lost",
        "errors",
        "floor incr/s",
        "floor lost / errors",
    ]
    return markdown_table(headers, rows)


def targets_table(targets: Sequence[Mapping[str, Any]]) -> str:
    keys = ("target", "ours", "peer", "shown", "limit", "result")
    rows = [[str(target.get(key, "")) for key in keys] for target in targets]
    return markdown_table(["target", "ours", "peer", "ratio", "limit", "result"], rows)


def print_header(machine: Mapping[str, str], run: str) -> None:
    print("# SessionCache benchmark (issue 3)\n")
    for name, value in machine.items():
        print(f"- {name}: {value}")
    print(f"- run: {run}\n", flush=True)


def print_report(results: Mapping[str, Any]) -> None:
    sections = [
        ("Median µs per operation", operations_table(results, rate=False)),
        ("Operations per second", operations_table(results, rate=True) + "\n\n" + NOTES),
    ]
    if results["scaling"]:
        title = "SessionCache at 10k vs 1M keys (random keys; get with L1 off; floor on the same file)"
        sections.append((title, scaling_table(results["scaling"])))
    title = "Processes incrementing 100 shared counters (increments per second, all processes together)"
    sections.append((title, processes_table(results["processes"])))
    sections.append(("Targets", targets_table(results["targets"])))
    for title, body in sections:
        print(f"## {title}\n\n{body}\n")
    notes = {**results["unavailable"], **failures(results)}
    if notes:
        print("Not measured:\n" + "\n".join(f"- {name}: {reason}" for name, reason in notes.items()))


def failures(results: Mapping[str, Any]) -> dict[str, str]:
    table = {**results["operations"], PREFIX: results["prefix_delete"]}
    return {
        f"{c} {row}": v for row, timings in table.items() for c, v in timings.items() if isinstance(v, str)
    }
