"""``output/manifest.json``: every file seen, every table written, the limits, and the time it took.

Everything in it is deterministic for the same uploads and options except ``started_at``,
``finished_at``, ``duration_seconds``, ``phase_seconds``, ``cpu_seconds``, ``processes`` and
``worker_peak_rss_bytes``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from api.services.archive_scan import ScanLimits, SourceFile
from api.services.xlsx_writer import EXCEL_MAX_CELL_CHARACTERS, EXCEL_MAX_ROWS, SheetReport

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class TableSummary:
    record_type: str
    file: str
    rows: int
    columns: list[str]


@dataclass(frozen=True, slots=True)
class RunFacts:
    """How the run went, beside what it produced."""

    session_id: str
    options: dict[str, Any]
    limits: ScanLimits
    started: float
    finished: float
    processes: int
    worker_peak_rss_bytes: int  # the largest peak resident size of a process that converted files
    # Seconds until the scan ended (conversion may have started before), then until every file was
    # converted, then writing the tables, workbook and manifest.
    phases: dict[str, float]
    # CPU seconds of the job's own process (scan, conversion done here, writing) and of the pool's
    # workers while they converted parts.
    job_cpu_seconds: float
    pool_cpu_seconds: float


def build_manifest(
    facts: RunFacts,
    files: list[SourceFile],
    tables: list[TableSummary],
    workbook: list[SheetReport] | None,
) -> dict[str, Any]:
    statuses = Counter(source.status for source in files)
    return {
        "version": MANIFEST_VERSION,
        "session_id": facts.session_id,
        "started_at": _iso(facts.started),
        "finished_at": _iso(facts.finished),
        "duration_seconds": round(facts.finished - facts.started, 3),
        "phase_seconds": {phase: round(seconds, 3) for phase, seconds in facts.phases.items()},
        "cpu_seconds": {
            "job_process": round(facts.job_cpu_seconds, 3),
            "pool_workers": round(facts.pool_cpu_seconds, 3),
        },
        "processes": facts.processes,
        "worker_peak_rss_bytes": facts.worker_peak_rss_bytes,
        "options": facts.options,
        "limits": _limits(facts.limits),
        "limits_hit": _limits_hit(workbook),
        "summary": {
            "files": len(files),
            "xml_files": sum(source.kind == "xml" for source in files),
            "converted": statuses["converted"],
            "skipped": statuses["skipped"],
            "failed": statuses["failed"],
            "records": sum(source.records for source in files),
            "tables": len(tables),
        },
        "files": [_file_entry(source) for source in files],
        "tables": [asdict(table) for table in tables],
        "xlsx": None
        if workbook is None
        else {"file": "tables.xlsx", "sheets": [asdict(r) for r in workbook]},
    }


def write_manifest(manifest: dict[str, Any], directory: Path) -> Path:
    path = directory / MANIFEST_NAME
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    return path


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of the last finished conversion in ``directory`` (``output/``), if any."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    manifest: dict[str, Any] = orjson.loads(path.read_bytes())
    return manifest


def job_result(manifest: dict[str, Any]) -> dict[str, Any]:
    """The small summary a conversion job returns (the manifest itself stays a file)."""
    return {
        "manifest": f"output/{MANIFEST_NAME}",
        "summary": manifest["summary"],
        "tables": [
            {"record_type": table["record_type"], "file": table["file"], "rows": table["rows"]}
            for table in manifest["tables"]
        ],
        "limits_hit": manifest["limits_hit"],
        "duration_seconds": manifest["duration_seconds"],
        # Bytes of the XML files converted: /api/metrics sums them from the jobs table.
        "xml_bytes": sum(entry["size"] for entry in manifest["files"] if entry["status"] == "converted"),
    }


def _file_entry(source: SourceFile) -> dict[str, Any]:
    return {
        "source": source.source,
        "kind": source.kind,
        "size": source.size,
        "sha256": source.sha256,
        "status": source.status,
        "reason": source.reason,
        "records": source.records,
    }


def _limits(limits: ScanLimits) -> dict[str, float]:
    return {
        "MAX_NESTED_ZIP_DEPTH": limits.max_depth,
        "MAX_TOTAL_FILES": limits.max_files,
        "MAX_TOTAL_BYTES": limits.max_total_bytes,
        "MAX_PER_FILE_BYTES": limits.max_file_bytes,
        "MAX_COMPRESSION_RATIO": limits.max_ratio,
    }


def _limits_hit(workbook: list[SheetReport] | None) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = []
    for report in workbook or []:
        if report.cut_cells:
            hits.append(
                {
                    "limit": "XLSX_MAX_CELL_CHARACTERS",
                    "value": EXCEL_MAX_CELL_CHARACTERS,
                    "detail": f"{report.cut_cells} cell(s) of {report.record_type} cut in tables.xlsx "
                    "(the CSV has them whole)",
                }
            )
        if len(report.sheets) > 1:
            hits.append(
                {
                    "limit": "XLSX_MAX_ROWS",
                    "value": EXCEL_MAX_ROWS,
                    "detail": f"{report.record_type} continues over sheets {', '.join(report.sheets)}",
                }
            )
    return hits


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
