"""convert_session end to end: outputs, manifest, determinism, replacing, cancelling, limits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from openpyxl import load_workbook

from api.services.archive_scan import ScanLimits
from api.services.conversion_runner import PartCutter
from api.services.conversion_service import ConversionConfig, ConversionLimitError, ConversionOptions
from api.services.record_path import InvalidRecordPathError
from tests.conftest import make_settings
from tests.support.archives import nested, zip_bytes
from tests.support.workspace import Workspace

DEPOSIT = """<doi_batch xmlns="http://www.crossref.org/schema/5.3.1">
<head><doi_batch_id>{batch}</doi_batch_id></head>
<body>
  <book><titles><title>Book {batch}</title></titles></book>
  <journal><journal_metadata><full_title>Journal {batch}</full_title></journal_metadata></journal>
</body></doi_batch>"""


def _deposit(batch: str) -> bytes:
    return DEPOSIT.format(batch=batch).encode()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    space = Workspace(tmp_path)
    space.upload("a.xml", _deposit("a"))
    space.upload("deposits.zip", zip_bytes([("2024/b.xml", _deposit("b")), ("notes.txt", b"hello")]))
    return space


def _manifest(workspace: Workspace) -> dict:  # type: ignore[type-arg]
    return json.loads(workspace.outputs()["manifest.json"])


def test_one_csv_per_record_type_and_a_manifest(workspace: Workspace) -> None:
    workspace.convert()
    assert sorted(workspace.outputs()) == ["book.csv", "journal.csv", "manifest.json"]
    assert workspace.outputs()["book.csv"].decode().splitlines() == [
        "source_file,record_index,record_type,head.doi_batch_id,titles.title",
        "a.xml,1,book,a,Book a",
        "deposits.zip!/2024/b.xml,1,book,b,Book b",
    ]


def test_outputs_are_registered_for_download(workspace: Workspace) -> None:
    workspace.convert()
    outputs = [f.name for f in workspace.storage.list_files(workspace.session_id) if f.kind == "output"]
    assert sorted(outputs) == ["book.csv", "journal.csv", "manifest.json"]


def test_the_result_summarises_the_run(workspace: Workspace) -> None:
    result = workspace.convert()
    assert result["summary"] == {
        "files": 4,
        "xml_files": 2,
        "converted": 2,
        "skipped": 1,
        "failed": 0,
        "records": 4,
        "tables": 2,
    }
    assert result["tables"] == [
        {"record_type": "book", "file": "book.csv", "rows": 2},
        {"record_type": "journal", "file": "journal.csv", "rows": 2},
    ]


def test_the_manifest_lists_every_file_seen(workspace: Workspace) -> None:
    workspace.upload("broken.xml", b"<r><unclosed></r>")
    workspace.convert()
    files = {entry["source"]: entry for entry in _manifest(workspace)["files"]}
    assert {source: entry["status"] for source, entry in files.items()} == {
        "a.xml": "converted",
        "broken.xml": "failed",
        "deposits.zip": "extracted",
        "deposits.zip!/2024/b.xml": "converted",
        "deposits.zip!/notes.txt": "skipped",
    }
    assert files["a.xml"]["records"] == 2
    assert len(files["a.xml"]["sha256"]) == 64
    assert files["broken.xml"]["reason"].startswith("malformed XML")
    assert files["deposits.zip!/notes.txt"]["reason"] == "not an XML or ZIP file (.txt)"


def test_the_manifest_lists_tables_limits_and_timing(workspace: Workspace) -> None:
    workspace.convert()
    manifest = _manifest(workspace)
    assert manifest["tables"][0] == {
        "record_type": "book",
        "file": "book.csv",
        "rows": 2,
        "columns": ["source_file", "record_index", "record_type", "head.doi_batch_id", "titles.title"],
    }
    assert manifest["limits"]["MAX_NESTED_ZIP_DEPTH"] == 5
    assert manifest["limits_hit"] == []
    assert manifest["duration_seconds"] >= 0
    assert manifest["cpu_seconds"]["job_process"] > 0
    assert manifest["cpu_seconds"]["pool_workers"] == 0  # converted here, no pool started


def test_xlsx_is_written_on_request(workspace: Workspace) -> None:
    workspace.convert(ConversionOptions(formats=("csv", "xlsx")))
    workbook = load_workbook(workspace.area("output") / "tables.xlsx", read_only=True)
    assert workbook.sheetnames == ["book", "journal"]
    assert list(workbook["book"].values)[1] == ("a.xml", 1, "book", "a", "Book a")
    workbook.close()
    assert _manifest(workspace)["xlsx"]["sheets"][0]["rows"] == 2


def test_excel_option_marks_the_csv_for_spreadsheets(workspace: Workspace) -> None:
    workspace.upload("c.xml", _deposit("=1+1"))
    workspace.convert(ConversionOptions(excel=True))
    lines = workspace.outputs()["book.csv"].decode("utf-8-sig").splitlines()
    assert lines[2] == "c.xml,1,book,'=1+1,Book =1+1"


def test_a_record_path_selects_the_records(workspace: Workspace) -> None:
    workspace.convert(ConversionOptions(record_path="/doi_batch/body/journal"))
    assert sorted(workspace.outputs()) == ["journal.csv", "manifest.json"]


def test_an_invalid_record_path_is_refused_before_anything_runs(workspace: Workspace) -> None:
    with pytest.raises(InvalidRecordPathError):
        workspace.convert(ConversionOptions(record_path="doi_batch/../x"))
    assert workspace.outputs() == {}


def test_a_second_run_writes_identical_tables(workspace: Workspace) -> None:
    workspace.convert()
    first = workspace.outputs()
    workspace.convert()
    second = workspace.outputs()
    assert {name: data for name, data in first.items() if name.endswith(".csv")} == {
        name: data for name, data in second.items() if name.endswith(".csv")
    }


def test_a_pool_of_processes_writes_the_same_tables(tmp_path: Path) -> None:
    single, pooled = Workspace(tmp_path / "one"), Workspace(tmp_path / "two")
    for space in (single, pooled):
        for n in range(12):
            space.upload(f"{n:02d}.xml", _deposit(f"batch {n}"))
    single.convert()
    pooled.convert(processes=2)
    assert single.outputs().keys() == pooled.outputs().keys()
    assert json.loads(pooled.outputs()["manifest.json"])["cpu_seconds"]["pool_workers"] > 0
    assert {k: v for k, v in single.outputs().items() if k != "manifest.json"} == {
        k: v for k, v in pooled.outputs().items() if k != "manifest.json"
    }


def _large_deposit(records: int) -> bytes:
    body = "\n".join(f"<book><titles><title>Book {n}</title></titles></book>" for n in range(records))
    return DEPOSIT.replace("<body>", f"<body>{body}").format(batch="large").encode()


def test_a_large_file_split_between_processes_gives_the_same_tables(tmp_path: Path) -> None:
    single, pooled = Workspace(tmp_path / "one"), Workspace(tmp_path / "two")
    for space in (single, pooled):
        space.upload("a.xml", _deposit("a"))
        space.upload("large.xml", _large_deposit(4000))
        space.upload("z.xml", _deposit("z"))
    single.convert(whole_document_bytes=10_000)
    pooled.convert(processes=2, whole_document_bytes=10_000)
    assert [message for _, message in pooled.messages if message.startswith("converted")][-1] == (
        "converted 3 of 3 files"
    )
    one, two = single.outputs(), pooled.outputs()
    assert {k: v for k, v in one.items() if k != "manifest.json"} == {
        k: v for k, v in two.items() if k != "manifest.json"
    }
    pooled_files, single_files = (
        {file["source"]: file for file in json.loads(outputs["manifest.json"])["files"]}
        for outputs in (two, one)
    )
    assert pooled_files["large.xml"]["status"] == "converted"
    assert pooled_files["large.xml"]["records"] == single_files["large.xml"]["records"] == 4002
    assert pooled_files["large.xml"]["sha256"] == single_files["large.xml"]["sha256"]


def test_a_split_file_that_fails_late_leaves_no_rows_from_any_range(tmp_path: Path) -> None:
    space = Workspace(tmp_path)
    space.upload("a.xml", _deposit("a"))
    space.upload("large.xml", _large_deposit(4000)[: -len("</doi_batch>")] + b"<broken")
    space.convert(processes=2, whole_document_bytes=10_000)
    files = {file["source"]: file for file in _manifest(space)["files"]}
    assert files["large.xml"]["status"] == "failed"
    assert files["large.xml"]["records"] == 0
    assert files["large.xml"]["reason"].startswith("malformed XML")
    rows = space.outputs()["book.csv"].decode().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["a.xml"]


def test_a_new_run_replaces_the_previous_outputs(workspace: Workspace) -> None:
    workspace.convert()
    workspace.convert(ConversionOptions(record_path="/doi_batch/body/book"))
    assert sorted(workspace.outputs()) == ["book.csv", "manifest.json"]


def test_progress_counts_files_done_of_the_total(workspace: Workspace) -> None:
    workspace.convert()
    assert workspace.messages[0] == (0, "scanning uploads")
    converted = [message for _, message in workspace.messages if message.startswith("converted")]
    assert converted == ["converted 1 of 2 files", "converted 2 of 2 files"]
    assert workspace.messages[-1] == (100, "done")
    percents = [percent for percent, _ in workspace.messages]
    assert percents == sorted(percents)


class Cancelled(Exception):
    pass


def test_cancelling_leaves_the_previous_outputs_and_nothing_else(workspace: Workspace) -> None:
    workspace.convert()
    before = workspace.outputs()

    def cancel(percent: int, message: str) -> None:
        if message.startswith("converted"):
            raise Cancelled

    with pytest.raises(Cancelled):
        workspace.convert(report=cancel)
    assert workspace.outputs() == before
    assert [path.name for path in workspace.area("output").iterdir() if path.name.startswith(".conv")] == []
    assert list(workspace.area("extracted").iterdir()) == []


def test_a_limit_breach_fails_clearly_and_removes_what_was_extracted(workspace: Workspace) -> None:
    workspace.upload("deep.zip", nested(4))
    tight = ScanLimits(
        max_depth=3, max_files=100, max_total_bytes=1 << 20, max_file_bytes=1 << 20, max_ratio=200
    )
    with pytest.raises(ConversionLimitError) as caught:
        workspace.convert(limits=tight)
    assert caught.value.extra == {"limit": "MAX_NESTED_ZIP_DEPTH", "value": 3}
    assert "nested too deeply" in caught.value.detail
    assert list(workspace.area("extracted").iterdir()) == []
    assert workspace.outputs() == {}


def test_the_default_pool_has_one_process_per_usable_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)  # a container's share
    assert ConversionConfig.from_settings(make_settings(tmp_path)).processes == 3
    assert ConversionConfig.from_settings(make_settings(tmp_path, conversion_processes=5)).processes == 5


def test_the_cutter_hears_of_each_archive_before_it_is_extracted(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard: list[int] = []  # how many XML files the cutter had when each archive started
    monkeypatch.setattr(PartCutter, "archive_starts", lambda cutter: heard.append(cutter.files))
    workspace.convert()
    assert heard == [1]  # deposits.zip, after a.xml and before its own b.xml
