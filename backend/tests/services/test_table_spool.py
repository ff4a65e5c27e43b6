"""Spooling rows per record type: lines in first-appearance column order, quoting, rollback."""

from __future__ import annotations

from pathlib import Path

from api.services.table_spool import PartWriter, csv_cell, value_cell
from api.services.xml_selection import Record


def _record(
    values: dict[str, str], context: dict[str, str] | None = None, record_type: str = "book"
) -> Record:
    return Record(record_type, context or {}, values)


def test_a_line_holds_the_cells_of_known_columns_in_order(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, 0)
    writer.add(0, 1, _record({"a": "1", "b": "2"}))
    writer.add(3, 1, _record({"b": "3", "c": "4"}))
    (table,) = writer.close()
    assert table.path.read_bytes() == b"0\t1\t1\t2\n3\t1\t\t3\t4\n"
    assert (table.columns, table.rows) == (["a", "b", "c"], 2)


def test_context_columns_are_remembered_as_such(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, 0)
    writer.add(0, 1, _record({"a": "1"}, {"head.id": "h"}))
    (table,) = writer.close()
    assert (table.columns, table.context_columns) == (["head.id", "a"], ["head.id"])


def test_each_record_type_has_its_own_spool(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, 2)
    writer.add(0, 1, _record({"a": "1"}, record_type="book"))
    writer.add(0, 2, _record({"a": "1"}, record_type="journal"))
    tables = writer.close()
    assert [(table.record_type, table.part) for table in tables] == [("book", 2), ("journal", 2)]
    assert len({table.path for table in tables}) == 2


def test_values_are_quoted_for_csv() -> None:
    assert [value_cell(value) for value in ("plain", "a, b", 'say "hi"')] == [
        "plain",
        '"a, b"',
        '"say ""hi"""',
    ]


def test_any_text_is_quoted_for_csv() -> None:
    assert csv_cell("two\nlines") == '"two\nlines"'
    assert csv_cell("cr\rhere") == '"cr\rhere"'


def test_a_discarded_file_leaves_no_rows_and_no_columns(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, 0)
    writer.begin_file()
    writer.add(0, 1, _record({"a": "1"}))
    writer.begin_file()
    writer.add(1, 1, _record({"a": "2", "new": "x"}))
    writer.add(1, 2, _record({"other": "y"}, record_type="journal"))
    writer.discard_file()
    writer.begin_file()
    writer.add(2, 1, _record({"a": "3"}))
    book, journal = writer.close()
    assert book.path.read_bytes() == b"0\t1\t1\n2\t1\t3\n"
    assert (book.columns, book.rows, book.size) == (["a"], 2, book.path.stat().st_size)
    assert (journal.rows, journal.columns, journal.size) == (0, [], 0)


def test_many_record_types_do_not_exhaust_file_handles(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, 0)
    for round_ in range(2):
        for index in range(500):
            writer.add(round_, 1, _record({"a": str(index)}, record_type=f"type{index}"))
    tables = writer.close()
    assert all(
        table.path.read_bytes() == f"0\t1\t{n}\n1\t1\t{n}\n".encode() for n, table in enumerate(tables)
    )


def test_a_seeded_table_starts_with_the_seed_columns(tmp_path: Path) -> None:
    seed = {"book": (["head.id", "b", "a"], ["head.id"])}
    writer = PartWriter(tmp_path, 1, seed)
    writer.add(0, 1, _record({"a": "1", "c": "2"}))  # b unused here, c new
    writer.add(0, 1, _record({"x": "3"}, record_type="journal"))  # not seeded
    book, journal = writer.close()
    assert book.path.read_bytes() == b"0\t1\t\t\t1\t2\n"
    assert (book.columns, book.context_columns) == (["head.id", "b", "a", "c"], ["head.id"])
    assert journal.columns == ["x"]


def test_a_discarded_file_keeps_the_seed_columns(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, 1, {"book": (["a"], [])})
    writer.begin_file()
    writer.add(0, 1, _record({"b": "1"}))
    writer.discard_file()
    (book,) = writer.close()
    assert (book.columns, book.rows, book.size) == (["a"], 0, 0)
