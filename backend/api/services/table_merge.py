"""From spooled parts to final tables: the column plan, CSV fragments, and the CSV files themselves.

The merge is in three steps so that no step serialises a parallel job:

1. ``plan_tables`` (cheap, in the coordinating process): the final columns of each table — the
   fixed ones, then context, then record columns, each in order of first appearance with parts taken
   in input order — and a safe, unique file name.
2. ``write_fragment`` (one per part and table, run wherever there is a free core, several to a
   call: ``write_fragments``): the part's rows re-ordered to the final columns, written as CSV
   without a header.
3. ``write_table`` (in the coordinating process): header, then the fragments byte for byte.

``excel=True`` adds a UTF-8 byte-order mark and neutralises cells starting with ``=``, ``+``, ``-`` or
``@`` (a leading ``'``), so a spreadsheet never runs them as formulas.
"""

from __future__ import annotations

import codecs
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Final

from api.services import filenames
from api.services.table_spool import ColumnSeed, SpooledTable, csv_cell

FIXED_COLUMNS: Final = ("source_file", "record_index", "record_type")
PREVIEW_STRIDE: Final = 1000  # a byte offset is kept for every this many rows (paged previews)
FORMULA_STARTS: Final = (b"=", b"+", b"-", b"@")
COPY_BUFFER: Final = 1024 * 1024
LINE_END: Final = b"\r\n"
SEED_MAX_COLUMNS: Final = 5000


@dataclass(slots=True)
class TablePlan:
    record_type: str
    file_name: str
    columns: list[str]  # after the fixed ones: context first, then record columns
    parts: list[SpooledTable]

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)


@dataclass(slots=True)
class Fragment:
    path: Path
    rows: int = 0
    size: int = 0
    offsets: list[int] = field(default_factory=list)  # of rows 0, PREVIEW_STRIDE, 2 * PREVIEW_STRIDE, ...


@dataclass(frozen=True, slots=True)
class FragmentTask:
    """One part of one table to re-order (picklable, for pool workers)."""

    spooled: SpooledTable
    record_type: str
    columns: list[str]
    sources: dict[int, str]  # file number -> source path, for the files of this part
    excel: bool
    destination: Path


def plan_tables(parts: Iterable[Sequence[SpooledTable]]) -> list[TablePlan]:
    """One plan per record type (sorted by name), merging the parts in the order given."""
    plans, taken = [], set[str]()
    for record_type, spooled_parts in sorted(_by_type(parts).items()):
        context, record = _columns(spooled_parts)
        file_name = filenames.deduplicated(_table_file_name(record_type), taken)
        taken.add(file_name)
        plans.append(TablePlan(record_type, file_name, [*context, *record], spooled_parts))
    return plans


class ColumnSeeds:
    """The columns of the parts finished so far (numbered from 0), ordered as ``plan_tables``
    orders them: ``seed()`` is what the next part starts with (``table_spool.ColumnSeed``).

    Parts are merged in part order, as the plan merges them: one that finishes before an earlier
    one waits for it. Merging is incremental, so a job of thousands of parts does not merge every
    earlier part again for each new one.
    """

    def __init__(self, max_columns: int = SEED_MAX_COLUMNS) -> None:
        self.max_columns = max_columns  # a seed travels to a pool worker with every part
        self.merged = 0  # parts 0 .. merged - 1 are in the seed
        self._early: dict[int, Sequence[SpooledTable] | None] = {}  # finished, not yet merged
        self._context: dict[str, dict[str, None]] = {}  # record type -> context columns, in order
        self._record: dict[str, dict[str, None]] = {}  # record type -> the other columns, in order
        self._seed: ColumnSeed | None = None  # seed() until a column is added

    def finished(self, part: int, tables: Sequence[SpooledTable] | None) -> None:
        """Part ``part`` finished with ``tables`` (None: it passes no columns on)."""
        self._early[part] = tables
        while self.merged in self._early:
            merged = self._early.pop(self.merged)
            if merged is not None:
                self._add(merged)
            self.merged += 1

    def _add(self, tables: Sequence[SpooledTable]) -> None:
        for spooled in tables:
            if not spooled.rows:
                continue  # as in plan_tables: a table without rows adds no columns
            context = self._context.setdefault(spooled.record_type, {})
            record = self._record.setdefault(spooled.record_type, {})
            for name in spooled.context_columns:
                if name not in context:
                    context[name] = None
                    record.pop(name, None)  # context in any part: a context column
                    self._seed = None
            for name in spooled.columns:
                if name not in context and name not in record:
                    record[name] = None
                    self._seed = None

    def seed(self) -> ColumnSeed:
        """Each record type's columns (context first), types in name order until ``max_columns``
        (the same object until a part adds a column: every part that starts asks for it)."""
        if self._seed is not None:
            return self._seed
        seed: ColumnSeed = {}
        total = 0
        for record_type in sorted(self._context):
            context, record = list(self._context[record_type]), list(self._record[record_type])
            total += len(context) + len(record)
            if total > self.max_columns:
                break
            seed[record_type] = ([*context, *record], context)
        self._seed = seed
        return seed


def _by_type(parts: Iterable[Sequence[SpooledTable]]) -> dict[str, list[SpooledTable]]:
    """The tables that hold rows, by record type, in the order given."""
    by_type: dict[str, list[SpooledTable]] = {}
    for tables in parts:
        for spooled in tables:
            if spooled.rows:
                by_type.setdefault(spooled.record_type, []).append(spooled)
    return by_type


def _columns(spooled_parts: list[SpooledTable]) -> tuple[list[str], list[str]]:
    """A table's context columns and record columns, each in order of first appearance."""
    context = _first_appearance(name for part in spooled_parts for name in part.context_columns)
    record = _first_appearance(name for part in spooled_parts for name in part.columns if name not in context)
    return context, record


def write_fragment(task: FragmentTask) -> Fragment:
    """Write ``task.spooled``'s rows as CSV lines in the final column order (no header)."""
    fragment = Fragment(task.destination)
    type_cell = b"," + csv_cell(task.record_type).encode()
    prefixes = {
        str(number).encode(): _source_cell(source, task.excel) + b","
        for number, source in task.sources.items()
    }
    in_order = task.spooled.columns == task.columns[: len(task.spooled.columns)]
    convert = _in_order_line if in_order and not task.excel and task.columns else _reordered_line
    to_csv = convert(task, prefixes, type_cell)
    with task.spooled.path.open("rb") as spool, task.destination.open("wb") as out:
        for line in spool:
            data = to_csv(line)
            if fragment.rows % PREVIEW_STRIDE == 0:
                fragment.offsets.append(fragment.size)
            out.write(data)
            fragment.rows += 1
            fragment.size += len(data)
    return fragment


def write_fragments(tasks: Sequence[FragmentTask]) -> list[Fragment]:
    """``write_fragment`` for each task, in order (one call to a pool worker for many fragments)."""
    return [write_fragment(task) for task in tasks]


LineConverter = Callable[[bytes], bytes]


def _in_order_line(task: FragmentTask, prefixes: dict[bytes, bytes], type_cell: bytes) -> LineConverter:
    """The common case (a part whose columns are the first final columns, in the same order): the
    spool line only needs its tabs made commas and empty cells added, all in C."""
    width = len(task.columns)

    def convert(line: bytes) -> bytes:
        first = line.index(b"\t")
        second = line.index(b"\t", first + 1)
        cells = line[second + 1 : -1]
        missing = width - cells.count(b"\t") - 1
        return (
            prefixes[line[:first]]
            + line[first + 1 : second]
            + type_cell
            + b","
            + cells.replace(b"\t", b",")
            + b"," * missing
            + LINE_END
        )

    return convert


def _reordered_line(task: FragmentTask, prefixes: dict[bytes, bytes], type_cell: bytes) -> LineConverter:
    reorder, blank = _reorder(task.spooled, task.columns)
    padding = [b""] * (blank + 1)

    def convert(line: bytes) -> bytes:
        fields = line[:-1].split(b"\t")
        if len(fields) <= blank:
            fields += padding[: blank + 1 - len(fields)]
        cells = reorder(fields)
        if task.excel:
            cells = tuple(_neutralised(cell) for cell in cells)
        return b",".join((prefixes[fields[0]] + fields[1] + type_cell, *cells)) + LINE_END

    return convert


def write_table(
    plan: TablePlan, fragments: Sequence[Fragment], destination: Path, excel: bool
) -> list[tuple[int, int]]:
    """Write the header and the fragments (in order) to ``destination``; return (row number, byte
    offset) for the first row of every ``PREVIEW_STRIDE`` rows of each fragment."""
    cells = [csv_cell(name).encode() for name in (*FIXED_COLUMNS, *plan.columns)]
    if excel:
        cells = [_neutralised(cell) for cell in cells]
    header = (codecs.BOM_UTF8 if excel else b"") + b",".join(cells) + LINE_END
    offsets: list[tuple[int, int]] = []
    position, row = len(header), 0
    with destination.open("wb") as out:
        out.write(header)
        for fragment in fragments:
            offsets += [
                (row + index * PREVIEW_STRIDE, position + offset)
                for index, offset in enumerate(fragment.offsets)
            ]
            with fragment.path.open("rb") as source:
                shutil.copyfileobj(source, out, COPY_BUFFER)
            position += fragment.size
            row += fragment.rows
    return offsets


def iter_rows(plan: TablePlan, sources: dict[int, str]) -> Iterator[list[str | int]]:
    """The rows of a planned table as values (for the XLSX writer), without any CSV quoting."""
    for spooled in plan.parts:
        reorder, blank = _reorder(spooled, plan.columns)
        padding = [b""] * (blank + 1)
        with spooled.path.open("rb") as spool:
            for line in spool:
                fields = line[:-1].split(b"\t")
                if len(fields) <= blank:
                    fields += padding[: blank + 1 - len(fields)]
                values = [_unquoted(cell) for cell in reorder(fields)]
                yield [sources[int(fields[0])], int(fields[1]), plan.record_type, *values]


def _reorder(
    spooled: SpooledTable, columns: list[str]
) -> tuple[Callable[[list[bytes]], tuple[bytes, ...]], int]:
    """A function picking a spool line's cells in ``columns`` order, and the index of a blank cell
    (lines are padded up to and including it; columns this part never saw point at it)."""
    local = {name: index + 2 for index, name in enumerate(spooled.columns)}
    blank = len(spooled.columns) + 2
    indices = [local.get(name, blank) for name in columns]
    if len(indices) > 1:
        return itemgetter(*indices), blank
    return (lambda fields: tuple(fields[index] for index in indices)), blank


def _neutralised(cell: bytes) -> bytes:
    if cell.startswith(FORMULA_STARTS):
        return b"'" + cell
    if cell.startswith(b'"') and cell[1:2] in FORMULA_STARTS:
        return b"\"'" + cell[1:]
    return cell


def _unquoted(cell: bytes) -> str:
    text = cell.decode()
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def _source_cell(source: str, excel: bool) -> bytes:
    cell = csv_cell(source).encode()
    return _neutralised(cell) if excel else cell


def _table_file_name(record_type: str) -> str:
    try:
        return filenames.safe_filename(record_type.replace(":", "_")) + ".csv"
    except filenames.UnsafeFilenameError:
        return "records.csv"


def _first_appearance(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
