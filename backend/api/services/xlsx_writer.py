"""The optional ``tables.xlsx``: one sheet per record type, written with openpyxl's write-only mode.

Excel's rules, and what we do about them:
- sheet names: at most 31 characters, none of ``[ ] : * ? / \\``, not starting or ending with ``'``,
  unique regardless of case, never ``History`` — names are sanitised and numbered to fit;
- at most 1,048,576 rows a sheet — a longer table continues on ``name (2)``, ``name (3)``, ...
  each with the header again;
- at most 32,767 characters a cell — longer values are cut, and the report (then the manifest) says
  how many and where the first ones were;
- every value is written as text, so a value starting with ``=`` is never a formula; control
  characters XML cannot hold are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

EXCEL_MAX_ROWS: Final = 1_048_576
EXCEL_MAX_CELL_CHARACTERS: Final = 32_767
SHEET_NAME_LIMIT: Final = 31
RESERVED_SHEET_NAMES: Final = frozenset({"history"})
MAX_REPORTED_CUTS: Final = 20
_SHEET_UNSAFE = re.compile(r"[\[\]:*?/\\\x00-\x1f]")


@dataclass(slots=True)
class SheetReport:
    """How one table went into the workbook."""

    record_type: str
    sheets: list[str] = field(default_factory=list)
    rows: int = 0
    cut_cells: int = 0
    first_cuts: list[dict[str, str | int]] = field(default_factory=list)  # sheet, row, column


@dataclass(frozen=True, slots=True)
class SheetSource:
    record_type: str
    header: Sequence[str]
    rows: Iterator[Sequence[str | int]]


def write_workbook(
    tables: Iterable[SheetSource], destination: Path, max_rows: int = EXCEL_MAX_ROWS
) -> list[SheetReport]:
    """Write every table to ``destination``; ``max_rows`` counts the header row too."""
    workbook = Workbook(write_only=True)
    taken: set[str] = set()
    reports = []
    for table in tables:
        report = SheetReport(table.record_type)
        sheet = _new_sheet(workbook, report, table, taken)
        sheet_rows = 1
        for row in table.rows:
            if sheet_rows >= max_rows:
                sheet, sheet_rows = _new_sheet(workbook, report, table, taken), 1
            report.rows += 1
            sheet.append(
                [_cell(sheet, value, report, sheet_rows + 1, column) for column, value in enumerate(row)]
            )
            sheet_rows += 1
        reports.append(report)
    if not reports:
        workbook.create_sheet("tables")  # a workbook needs a sheet
    workbook.save(destination)
    return reports


def sheet_name(record_type: str, taken: set[str], part: int = 1) -> str:
    """A valid, unused sheet name for ``record_type`` (``part`` > 1: a continuation sheet)."""
    base = _SHEET_UNSAFE.sub("_", record_type).strip("'") or "records"
    suffix = f" ({part})" if part > 1 else ""
    counter = 1
    while True:
        candidate = base[: SHEET_NAME_LIMIT - len(suffix)].rstrip("'") + suffix
        if candidate.casefold() not in taken and candidate.casefold() not in RESERVED_SHEET_NAMES:
            taken.add(candidate.casefold())
            return candidate
        counter += 1
        suffix = f" ({part}.{counter})" if part > 1 else f" ({counter})"


def _new_sheet(
    workbook: Workbook, report: SheetReport, table: SheetSource, taken: set[str]
) -> WriteOnlyWorksheet:
    name = sheet_name(table.record_type, taken, len(report.sheets) + 1)
    report.sheets.append(name)
    sheet = workbook.create_sheet(name)
    sheet.append([_cell(sheet, value, report, 1, column) for column, value in enumerate(table.header)])
    return sheet  # type: ignore[no-any-return]


def _cell(sheet: WriteOnlyWorksheet, value: str | int, report: SheetReport, row: int, column: int) -> object:
    if isinstance(value, int):
        return value
    if ILLEGAL_CHARACTERS_RE.search(value):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    if len(value) > EXCEL_MAX_CELL_CHARACTERS:
        value = value[:EXCEL_MAX_CELL_CHARACTERS]
        report.cut_cells += 1
        if len(report.first_cuts) < MAX_REPORTED_CUTS:
            report.first_cuts.append({"sheet": report.sheets[-1], "row": row, "column": column + 1})
    if value.startswith("="):
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"  # text, never a formula
        return cell
    return value
