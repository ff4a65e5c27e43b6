"""Converting a workspace session's uploads into tables (DESIGN.md §9, docs/conversion.md).

``convert_session`` scans ``input/`` (extracting into ``extracted/``), flattens every XML record,
and writes one CSV per record type (and ``tables.xlsx`` on request) plus ``manifest.json``. Everything
is built in a hidden staging directory under ``output/`` and moved into place only at the end, so a
cancelled or failed run leaves the previous outputs as they were and nothing half-written. Running it
twice gives the same tables (idempotent, as a job must be).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from api.core.config import Settings
from api.errors import AppError, NotFoundError
from api.services import table_preview
from api.services.archive_scan import ScanLimits, SourceFile, scan
from api.services.conversion_manifest import (
    RunFacts,
    TableSummary,
    build_manifest,
    job_result,
    write_manifest,
)
from api.services.conversion_parts import FileOutcome, PartFile, PartResult
from api.services.conversion_runner import POOL_MIN_BYTES, PartCutter, Runner, usable_cpus
from api.services.record_path import parse_record_path
from api.services.storage_service import StorageService
from api.services.table_merge import (
    FIXED_COLUMNS,
    FragmentTask,
    TablePlan,
    iter_rows,
    plan_tables,
    write_table,
)
from api.services.xlsx_writer import SheetReport, SheetSource, write_workbook
from api.services.xml_records import WHOLE_DOCUMENT_BYTES
from api.services.zip_safety import LimitExceededError

Format = Literal["csv", "xlsx"]
Progress = Callable[[int, str], None]
STAGING_PREFIX: Final = ".conversion-"
XLSX_NAME: Final = "tables.xlsx"


class ConversionLimitError(AppError):
    status_code = 422
    code = "conversion_limit_exceeded"


@dataclass(frozen=True, slots=True)
class ConversionOptions:
    formats: tuple[Format, ...] = ("csv",)
    record_path: str | None = None
    excel: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"formats": list(self.formats), "record_path": self.record_path, "excel": self.excel}


@dataclass(frozen=True, slots=True)
class ConversionConfig:
    limits: ScanLimits
    processes: int = 1
    pool_min_bytes: int = POOL_MIN_BYTES
    whole_document_bytes: int = WHOLE_DOCUMENT_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ConversionConfig:
        limits = ScanLimits(
            max_depth=settings.max_nested_zip_depth,
            max_files=settings.max_total_files,
            max_total_bytes=settings.max_total_bytes,
            max_file_bytes=settings.max_per_file_bytes,
            max_ratio=settings.max_compression_ratio,
        )
        return cls(limits, settings.conversion_processes or usable_cpus())


@dataclass(slots=True)
class _Run:
    session_id: str
    options: ConversionOptions
    config: ConversionConfig
    report: Progress
    staging: Path
    started: float = field(default_factory=time.time)
    cpu_started: float = field(default_factory=time.process_time)
    files: list[SourceFile] = field(default_factory=list)
    xml_files: list[SourceFile] = field(default_factory=list)  # to convert, numbered in source order
    parts: list[list[PartFile]] = field(default_factory=list)
    done: int = 0
    marks: dict[str, float] = field(default_factory=dict)  # when each phase ended


def convert_session(
    storage: StorageService,
    session_id: str,
    options: ConversionOptions,
    report: Progress,
    config: ConversionConfig,
) -> dict[str, Any]:
    """Convert the session's uploads; return the job result (the manifest's summary).

    ``report(percent, message)`` is called as the work advances; it may raise to cancel, and then
    nothing of this run is left behind.

    Raises:
        InvalidRecordPathError (422): ``options.record_path`` is not a valid path.
        ConversionLimitError (422): a scan limit was reached; what was extracted is removed.
        NotFoundError: the session id is not valid.
    """
    record_path = parse_record_path(options.record_path) if options.record_path else None
    if storage.get_session(session_id) is None:
        raise NotFoundError("workspace session not found")  # deleted meanwhile: recreate nothing
    output = storage.path(session_id, "output")
    extracted = storage.path(session_id, "extracted")
    _remove_stale_staging(output)
    run = _Run(session_id, options, config, report, output / f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    run.staging.mkdir(parents=True)
    succeeded = False
    try:
        _empty(extracted)
        report(0, "scanning uploads")
        manifest = _convert(run, record_path, storage.path(session_id, "input"), extracted)
        _publish(run.staging, output)
        storage.register_outputs(session_id)
        succeeded = True
    except LimitExceededError as exc:
        raise ConversionLimitError(
            f"conversion stopped: {exc}", extra={"limit": exc.setting, "value": exc.limit}
        ) from None
    finally:
        shutil.rmtree(run.staging, ignore_errors=True)
        if not succeeded:
            _discard_run(storage, session_id, extracted)
    report(100, "done")
    return job_result(manifest)


def _convert(
    run: _Run, record_path: tuple[str, ...] | None, input_dir: Path, extracted: Path
) -> dict[str, Any]:
    spools = run.staging / "spools"
    spools.mkdir()
    config = run.config
    with Runner(
        config.processes, config.pool_min_bytes, lambda: _file_done(run), lambda r: _part_done(run, r)
    ) as runner:
        cutter = PartCutter(runner, record_path, spools, config.whole_document_bytes)

        def upload_done(files: list[SourceFile]) -> None:
            # Conversion starts while the scan goes on: each upload's XML files, in order, into parts.
            for source in files:
                if source.kind == "xml" and source.status == "pending":
                    cutter.add(_part_file(len(run.xml_files), source))
                    run.xml_files.append(source)

        def archive_starts(message: str) -> None:
            cutter.archive_starts()
            run.report(1, message)

        run.files = scan(input_dir, extracted, config.limits, archive_starts, upload_done)
        cutter.flush()
        run.marks["scan"] = time.time()
        run.parts = cutter.parts
        results = runner.results()
        run.marks["convert"] = time.time()
        failed_splits = _apply_outcomes(run.xml_files, results)
        for result in results:
            if any(outcome.number in failed_splits for outcome in result.outcomes):
                result.tables = []  # a range of a file that failed: none of its rows are kept
        run.report(90, "writing tables")
        plans = plan_tables(result.tables for result in results)
        sources = {number: source.source for number, source in enumerate(run.xml_files)}
        summaries = _write_tables(run, runner, plans, sources)
        processes = config.processes if runner.parallel else 1
        pool_cpu_seconds = runner.pool_cpu_seconds
    workbook = _write_workbook(run, plans, sources) if "xlsx" in run.options.formats else None
    peak = max((result.peak_rss_bytes for result in results), default=0)
    finished = time.time()
    phases = {
        "scan": run.marks["scan"] - run.started,
        "convert": run.marks["convert"] - run.marks["scan"],
        "write": finished - run.marks["convert"],
    }
    facts = RunFacts(
        run.session_id,
        run.options.as_json(),
        config.limits,
        run.started,
        finished,
        processes,
        peak,
        phases,
        job_cpu_seconds=time.process_time() - run.cpu_started,
        pool_cpu_seconds=pool_cpu_seconds,
    )
    manifest = build_manifest(facts, run.files, summaries, workbook)
    shutil.rmtree(spools)
    write_manifest(manifest, run.staging)
    return manifest


def _write_tables(
    run: _Run, runner: Runner, plans: list[TablePlan], sources: dict[int, str]
) -> list[TableSummary]:
    fragments_dir = run.staging / "fragments"
    fragments_dir.mkdir()
    tasks = [
        FragmentTask(
            spooled,
            plan.record_type,
            plan.columns,
            {part_file.number: part_file.source for part_file in run.parts[spooled.part]},
            run.options.excel,
            fragments_dir / f"{table}-{part}.csv",
        )
        for table, plan in enumerate(plans)
        for part, spooled in enumerate(plan.parts)
    ]
    fragments = iter(runner.fragments(tasks))
    summaries = []
    for plan in plans:
        offsets = write_table(
            plan, [next(fragments) for _ in plan.parts], run.staging / plan.file_name, run.options.excel
        )
        table_preview.write_offsets(run.staging, plan.file_name, offsets)
        summaries.append(
            TableSummary(plan.record_type, plan.file_name, plan.rows, [*FIXED_COLUMNS, *plan.columns])
        )
    shutil.rmtree(fragments_dir)
    return summaries


def _write_workbook(run: _Run, plans: list[TablePlan], sources: dict[int, str]) -> list[SheetReport]:
    run.report(95, "writing tables.xlsx")
    tables = (
        SheetSource(plan.record_type, [*FIXED_COLUMNS, *plan.columns], iter_rows(plan, sources))
        for plan in plans
    )
    return write_workbook(tables, run.staging / XLSX_NAME)


def _part_file(number: int, source: SourceFile) -> PartFile:
    assert source.path is not None  # the scan gives every XML file it lists as pending a path
    return PartFile(number, source.source, source.path, source.size, source.sha256)


def _file_done(run: _Run) -> None:
    run.done += 1
    _report_files(run)


def _part_done(run: _Run, result: PartResult) -> None:
    run.done += sum(not outcome.partial for outcome in result.outcomes)
    _report_files(run)


def _report_files(run: _Run) -> None:
    total = max(len(run.xml_files), 1)
    run.report(2 + 88 * run.done // total, f"converted {run.done} of {len(run.xml_files)} files")


def _apply_outcomes(xml_files: list[SourceFile], results: list[PartResult]) -> set[int]:
    """Record each file's outcome; return the numbers of split files that failed (the rows of
    their other ranges must go too). A split file's ranges come in order, the last one (which read
    the whole document) not ``partial``; the file fails if any range failed."""
    failed_splits: set[int] = set()
    records: dict[int, int] = {}  # records of the earlier ranges of a split file
    failure: dict[int, FileOutcome] = {}  # the first failed range of a split file
    for result in results:
        for outcome in result.outcomes:
            number = outcome.number
            if outcome.status == "failed" and (outcome.partial or number in records):
                failure.setdefault(number, outcome)
            if outcome.partial:
                records[number] = records.get(number, 0) + outcome.records
                continue
            source = xml_files[number]
            final = failure.get(number, outcome)
            source.status, source.reason = final.status, final.reason
            source.sha256 = outcome.sha256 or source.sha256
            source.records = 0 if final.status == "failed" else records.get(number, 0) + outcome.records
            if number in records and final.status == "failed":
                failed_splits.add(number)
    return failed_splits


def _publish(staging: Path, output: Path) -> None:
    """Move the new outputs into ``output/`` and remove the previous run's (new names first, so a
    reader sees old or new files, never none; the manifest last, as the run's completion mark)."""
    new = {path.name for path in staging.iterdir()}
    for path in sorted(staging.iterdir(), key=lambda path: path.name == "manifest.json"):
        target = output / path.name
        if path.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        path.replace(target)
    for path in output.iterdir():
        if path.name not in new and not path.name.startswith("."):
            path.unlink()


def _remove_stale_staging(output: Path) -> None:
    # Left by a run whose process died; a new run of the same session replaces it.
    for path in output.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def _discard_run(storage: StorageService, session_id: str, extracted: Path) -> None:
    if storage.get_session(session_id) is None:
        # Deleted while this run went on: its cleanup cancelled the job but could not wait for it,
        # so what the run wrote since (directories, output records) goes the same way.
        storage.cleanup_session(session_id)
    else:
        _empty(extracted)


def _empty(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
