"""tables.xlsx: one sheet per record type, Excel's limits on names, rows and cells."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook

from api.services.xlsx_writer import EXCEL_MAX_CELL_CHARACTERS, SheetSource, sheet_name, write_workbook

HEADER = ["source_file", "record_index", "record_type", "title"]


def _source(record_type: str, titles: list[str]) -> SheetSource:
    return SheetSource(
        record_type, HEADER, iter([["a.xml", n, record_type, t] for n, t in enumerate(titles, 1)])
    )


def test_each_record_type_gets_a_sheet_with_header_and_rows(tmp_path: Path) -> None:
    write_workbook([_source("book", ["A", "B"]), _source("journal", ["C"])], tmp_path / "t.xlsx")
    workbook = load_workbook(tmp_path / "t.xlsx", read_only=True)
    assert workbook.sheetnames == ["book", "journal"]
    assert [list(row) for row in workbook["book"].values] == [
        HEADER,
        ["a.xml", 1, "book", "A"],
        ["a.xml", 2, "book", "B"],
    ]
    workbook.close()


@pytest.mark.parametrize(
    ("record_type", "expected"),
    [
        ("jats:article", "jats_article"),
        ("a[b]*c?d/e\\f", "a_b__c_d_e_f"),
        ("'quoted'", "quoted"),
        ("x" * 40, "x" * 31),
        ("History", "History (2)"),
    ],
)
def test_sheet_names_follow_excels_rules(record_type: str, expected: str) -> None:
    assert sheet_name(record_type, set()) == expected


def test_sheet_names_are_unique_regardless_of_case() -> None:
    taken: set[str] = set()
    assert [sheet_name(name, taken) for name in ("Book", "book", "BOOK")] == ["Book", "book (2)", "BOOK (3)"]


def test_rows_beyond_the_limit_continue_on_another_sheet(tmp_path: Path) -> None:
    reports = write_workbook([_source("book", [str(n) for n in range(5)])], tmp_path / "t.xlsx", max_rows=3)
    assert reports[0].sheets == ["book", "book (2)", "book (3)"]
    workbook = load_workbook(tmp_path / "t.xlsx", read_only=True)
    assert [[row[3] for row in workbook[name].values] for name in workbook.sheetnames] == [
        ["title", "0", "1"],
        ["title", "2", "3"],
        ["title", "4"],
    ]
    workbook.close()


def test_cells_over_the_limit_are_cut_and_reported(tmp_path: Path) -> None:
    long = "x" * (EXCEL_MAX_CELL_CHARACTERS + 10)
    (report,) = write_workbook([_source("book", ["short", long])], tmp_path / "t.xlsx")
    assert (report.cut_cells, report.first_cuts) == (1, [{"sheet": "book", "row": 3, "column": 4}])
    workbook = load_workbook(tmp_path / "t.xlsx", read_only=True)
    assert len(list(workbook["book"].values)[2][3]) == EXCEL_MAX_CELL_CHARACTERS
    workbook.close()


def test_values_that_look_like_formulas_are_text(tmp_path: Path) -> None:
    write_workbook([_source("book", ["=HYPERLINK(1)"])], tmp_path / "t.xlsx")
    workbook = load_workbook(tmp_path / "t.xlsx")
    cell = workbook["book"]["D2"]
    assert (cell.value, cell.data_type) == ("=HYPERLINK(1)", "s")
    workbook.close()


def test_control_characters_are_dropped(tmp_path: Path) -> None:
    write_workbook([_source("book", ["a\x01b\x1fc"])], tmp_path / "t.xlsx")
    workbook = load_workbook(tmp_path / "t.xlsx", read_only=True)
    assert list(workbook["book"].values)[1][3] == "abc"
    workbook.close()


def test_a_workbook_without_tables_still_opens(tmp_path: Path) -> None:
    assert write_workbook([], tmp_path / "t.xlsx") == []
    assert load_workbook(tmp_path / "t.xlsx").sheetnames == ["tables"]
