"""Paged rows of a converted table, for previews (``GET /api/sessions/{id}/tables/{record_type}``).

The conversion keeps, beside each CSV, the byte offsets of rows about every ``PREVIEW_STRIDE`` rows
(in the hidden ``output/.tables/``), so a page deep into a large table costs one seek and at most
about ``PREVIEW_STRIDE`` skipped rows, never a read from the start.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Final

from api.errors import NotFoundError

OFFSETS_DIRECTORY: Final = ".tables"


class TableNotFoundError(NotFoundError):
    code = "table_not_found"


@dataclass(frozen=True, slots=True)
class TablePage:
    record_type: str
    file: str
    columns: list[str]
    rows: list[list[str]]
    offset: int
    total: int


def write_offsets(directory: Path, file_name: str, offsets: list[tuple[int, int]]) -> None:
    target = directory / OFFSETS_DIRECTORY
    target.mkdir(exist_ok=True)
    (target / f"{file_name}.json").write_text(json.dumps(offsets), encoding="utf-8")


def read_page(output: Path, manifest: dict[str, Any], record_type: str, offset: int, limit: int) -> TablePage:
    """Rows ``offset`` to ``offset + limit`` of the table of ``record_type``.

    Raises:
        TableNotFoundError: the last conversion made no such table.
    """
    table = next((table for table in manifest["tables"] if table["record_type"] == record_type), None)
    path = output / table["file"] if table is not None else None
    if table is None or path is None or not path.is_file():
        raise TableNotFoundError(f"no table for record type {record_type!r} in the last conversion")
    with path.open("rb") as handle:
        header = _header(handle)
        start_row, start_byte = _nearest(_offsets(output, table["file"]), offset)
        if start_byte:
            handle.seek(start_byte)
        reader = csv.reader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
        rows = list(islice(reader, offset - start_row, offset - start_row + limit))
    return TablePage(record_type, table["file"], header, rows, offset, int(table["rows"]))


def _header(handle: BinaryIO) -> list[str]:
    line = handle.readline().decode("utf-8").removeprefix(codecs.BOM_UTF8.decode())
    return next(csv.reader([line]))


def _nearest(offsets: list[list[int]], row: int) -> tuple[int, int]:
    """The last known (row, byte offset) at or before ``row``; (0, 0): read on from the header."""
    index = bisect.bisect_right([known for known, _ in offsets], row) - 1
    return (offsets[index][0], offsets[index][1]) if index >= 0 else (0, 0)


def _offsets(output: Path, file_name: str) -> list[list[int]]:
    path = output / OFFSETS_DIRECTORY / f"{file_name}.json"
    try:
        offsets: list[list[int]] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # no index: read from the start
    return offsets
