"""Rows spooled to disk per record type, never a whole table in memory (the header is fixed later).

One ``PartWriter`` holds the tables of one *part*: the rows of a contiguous run of input files,
written by one worker. A spool line is ``file_no TAB record_index TAB cell TAB cell ... LF`` in
UTF-8, where cell *i* is the value of the part's *i*-th column already quoted for CSV, and a line
stops at its last known column. The columns are in order of first appearance, after those the part
was seeded with (``ColumnSeed``: the columns of the parts before it, in their final order, so that
its rows rarely need re-ordering when the tables are merged). Values are whitespace-collapsed, so they
never hold a tab or a line break; that is what lets a spool line be split without a CSV parser.

A file that fails half-way through an incremental parse is rolled back (``discard_file``): its lines
are truncated away and the columns it introduced forgotten, so a failed file leaves no trace.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import BinaryIO, Final

from api.services.xml_selection import Record

MAX_OPEN_SPOOLS: Final = 32  # a generic document can have thousands of record types
# Record type -> the columns a part's table starts with, in order, and which of them are context.
ColumnSeed = dict[str, tuple[list[str], list[str]]]
# Lines are built by looking every known column up in the record (C-level) unless the table has
# this many times more columns than the record has values.
SPARSE_FACTOR: Final = 8


def value_cell(value: str) -> str:
    """A whitespace-collapsed value quoted for CSV (RFC 4180): it cannot hold CR, LF or tab."""
    if '"' in value:
        return '"' + value.replace('"', '""') + '"'
    return '"' + value + '"' if "," in value else value


def csv_cell(value: str) -> str:
    """Any text quoted for CSV (RFC 4180)."""
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass(slots=True)
class SpooledTable:
    """What a part spooled for one record type (picklable: it travels back from pool workers)."""

    record_type: str
    path: Path
    part: int
    rows: int = 0
    columns: list[str] = field(default_factory=list)  # in order of first appearance
    context_columns: list[str] = field(default_factory=list)  # the subset that is file context
    size: int = 0  # bytes of the spool file


@dataclass(slots=True)
class _Mark:
    size: int
    columns: int
    rows: int
    context_columns: int


class TableSpool:
    def __init__(
        self, record_type: str, path: Path, part: int, seed: tuple[list[str], list[str]] | None = None
    ) -> None:
        self.record_type = record_type
        self.path = path
        self.part = part
        columns, context_columns = seed or ([], [])
        self.names: list[str] = list(columns)  # the columns in order, for the C-level lookups below
        self.columns: dict[str, int] = {name: index for index, name in enumerate(self.names)}
        self.context_columns: list[str] = list(context_columns)
        self.rows = 0
        self.size = 0
        self.handle: BinaryIO | None = None

    def line(self, file_no: int, record_index: int, record: Record) -> bytes:
        """The spool line of ``record`` (new columns are appended to the table's columns)."""
        context, values = record.context, record.values
        known = self.columns.keys()
        if not (values.keys() <= known and context.keys() <= known):
            self._learn(context, values)
        merged = context | values if context else values
        if len(self.names) <= SPARSE_FACTOR * len(merged):
            # Every known column looked up in C: far cheaper than a Python loop over the values.
            joined = "\t".join(map(merged.get, self.names, repeat("")))
        else:  # a wide table and a narrow record (generic documents): place the values one by one
            cells = [""] * len(self.names)
            for name, value in merged.items():
                cells[self.columns[name]] = value
            joined = "\t".join(cells)
        if '"' in joined or "," in joined:
            joined = "\t".join(map(value_cell, joined.split("\t")))
        self.rows += 1
        data = f"{file_no}\t{record_index}\t{joined}\n".encode()
        self.size += len(data)
        return data

    def _learn(self, context: dict[str, str], values: dict[str, str]) -> None:
        for names, is_context in ((context, True), (values, False)):
            for name in names:
                if name not in self.columns:
                    self.columns[name] = len(self.names)
                    self.names.append(name)
                    if is_context:
                        self.context_columns.append(name)

    def mark(self) -> _Mark:
        return _Mark(self.size, len(self.columns), self.rows, len(self.context_columns))

    def rollback(self, mark: _Mark) -> None:
        self.size, self.rows = mark.size, mark.rows
        for name in self.names[mark.columns :]:
            del self.columns[name]
        del self.names[mark.columns :]
        del self.context_columns[mark.context_columns :]

    def summary(self) -> SpooledTable:
        return SpooledTable(
            self.record_type,
            self.path,
            self.part,
            self.rows,
            list(self.names),
            list(self.context_columns),
            self.size,
        )


class PartWriter:
    """The spools of one part, in ``directory`` (file names ``part{n}-{table}.tsv``), each table
    starting with the columns ``seed`` gives for its record type."""

    def __init__(self, directory: Path, part: int, seed: ColumnSeed | None = None) -> None:
        self.directory = directory
        self.part = part
        self.seed = seed or {}
        self.spools: dict[str, TableSpool] = {}
        self._open: OrderedDict[str, TableSpool] = OrderedDict()
        self._marks: dict[str, _Mark] = {}

    def begin_file(self) -> None:
        self._marks = {}

    def add(self, file_no: int, record_index: int, record: Record) -> None:
        spool = self.spools.get(record.record_type)
        if spool is None:
            path = self.directory / f"part{self.part:05d}-{len(self.spools):05d}.tsv"
            spool = TableSpool(record.record_type, path, self.part, self.seed.get(record.record_type))
            self.spools[record.record_type] = spool
        if record.record_type not in self._marks:
            self._marks[record.record_type] = spool.mark()
        self._handle(spool).write(spool.line(file_no, record_index, record))

    def discard_file(self) -> None:
        """Forget every row and column the current file added."""
        for record_type, mark in self._marks.items():
            spool = self.spools[record_type]
            self._close(spool)
            spool.rollback(mark)
            with spool.path.open("r+b") as handle:
                handle.truncate(mark.size)
        self._marks = {}

    def close(self) -> list[SpooledTable]:
        for spool in list(self._open.values()):
            self._close(spool)
        return [spool.summary() for spool in self.spools.values()]

    def abort(self) -> None:
        """Close every handle (the spools are removed with the staging directory)."""
        for spool in list(self._open.values()):
            self._close(spool)

    def _handle(self, spool: TableSpool) -> BinaryIO:
        if spool.handle is not None:
            self._open.move_to_end(spool.record_type)
            return spool.handle
        if len(self._open) >= MAX_OPEN_SPOOLS:
            self._close(next(iter(self._open.values())))
        spool.handle = spool.path.open("ab")
        self._open[spool.record_type] = spool
        return spool.handle

    def _close(self, spool: TableSpool) -> None:
        if spool.handle is not None:
            spool.handle.close()
            spool.handle = None
            self._open.pop(spool.record_type, None)
