"""From spooled parts to CSV: the column plan, fragments, the header, Excel safety, offsets."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.services import table_merge
from api.services.table_merge import (
    ColumnSeeds,
    FragmentTask,
    TablePlan,
    plan_tables,
    write_fragment,
    write_table,
)
from api.services.table_spool import PartWriter, SpooledTable
from api.services.xml_selection import Record

SOURCES = {0: "a.zip!/one.xml", 1: "b, with comma.xml", 2: "=cmd.xml"}


def _part(
    directory: Path, part: int, rows: list[tuple[int, str, dict[str, str], dict[str, str]]]
) -> list[SpooledTable]:
    writer = PartWriter(directory, part)
    for index, (file_no, record_type, context, values) in enumerate(rows, start=1):
        writer.add(file_no, index, Record(record_type, context, values))
    return writer.close()


def _csv(tmp_path: Path, parts: list[list[SpooledTable]], excel: bool = False) -> list[list[str]]:
    (plan,) = plan_tables(parts)
    fragments = [
        write_fragment(
            FragmentTask(spooled, plan.record_type, plan.columns, SOURCES, excel, tmp_path / f"f{n}")
        )
        for n, spooled in enumerate(plan.parts)
    ]
    write_table(plan, fragments, tmp_path / plan.file_name, excel)
    text = (tmp_path / plan.file_name).read_text(encoding="utf-8-sig" if excel else "utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_columns_are_fixed_then_context_then_record_in_first_appearance(tmp_path: Path) -> None:
    first = _part(tmp_path, 0, [(0, "book", {"head.id": "1"}, {"b": "x", "a": "y"})])
    second = _part(tmp_path, 1, [(1, "book", {"head.id": "2", "head.extra": "e"}, {"c": "z", "a": "w"})])
    (plan,) = plan_tables([first, second])
    assert plan.columns == ["head.id", "head.extra", "b", "a", "c"]
    assert _csv(tmp_path, [first, second])[0] == [
        "source_file",
        "record_index",
        "record_type",
        "head.id",
        "head.extra",
        "b",
        "a",
        "c",
    ]


def test_rows_land_under_their_columns_across_parts(tmp_path: Path) -> None:
    first = _part(tmp_path, 0, [(0, "book", {}, {"b": "x"})])
    second = _part(tmp_path, 1, [(1, "book", {}, {"c": "z", "b": "w"})])
    assert _csv(tmp_path, [first, second])[1:] == [
        ["a.zip!/one.xml", "1", "book", "x", ""],
        ["b, with comma.xml", "1", "book", "w", "z"],
    ]


def test_one_plan_per_record_type_sorted_by_name(tmp_path: Path) -> None:
    tables = _part(tmp_path, 0, [(0, "journal", {}, {"a": "1"}), (0, "book", {}, {"a": "2"})])
    assert [plan.record_type for plan in plan_tables([tables])] == ["book", "journal"]


def test_unsafe_record_types_get_safe_unique_file_names(tmp_path: Path) -> None:
    tables = _part(tmp_path, 0, [(0, "jats:article", {}, {"a": "1"}), (0, "jats_article", {}, {"a": "2"})])
    assert [plan.file_name for plan in plan_tables([tables])] == ["jats_article.csv", "jats_article (2).csv"]


def test_values_round_trip_through_rfc_4180(tmp_path: Path) -> None:
    values = {"a": 'He said "hi", twice', "b": "plain"}
    rows = _csv(tmp_path, [_part(tmp_path, 0, [(0, "book", {}, values)])])
    assert rows[1][3:] == ['He said "hi", twice', "plain"]


def test_lines_end_with_crlf(tmp_path: Path) -> None:
    _csv(tmp_path, [_part(tmp_path, 0, [(0, "book", {}, {"a": "1"})])])
    assert (tmp_path / "book.csv").read_bytes().endswith(b"book,1\r\n")


def test_excel_output_starts_with_a_bom(tmp_path: Path) -> None:
    _csv(tmp_path, [_part(tmp_path, 0, [(0, "book", {}, {"a": "1"})])], excel=True)
    assert (tmp_path / "book.csv").read_bytes().startswith(b"\xef\xbb\xbfsource_file,")


def test_excel_output_neutralises_formula_cells(tmp_path: Path) -> None:
    values = {"a": "=HYPERLINK(1)", "b": "+1", "c": "-2", "d": "@SUM(1)", "e": '=a,"b"', "f": "ok"}
    rows = _csv(tmp_path, [_part(tmp_path, 2, [(2, "book", {}, values)])], excel=True)
    assert rows[0][3:] == ["a", "b", "c", "d", "e", "f"]
    assert rows[1] == ["'=cmd.xml", "1", "book", "'=HYPERLINK(1)", "'+1", "'-2", "'@SUM(1)", '\'=a,"b"', "ok"]


def test_excel_output_neutralises_header_cells(tmp_path: Path) -> None:
    rows = _csv(tmp_path, [_part(tmp_path, 0, [(0, "book", {}, {"@type": "x"})])], excel=True)
    assert rows[0][3] == "'@type"


def test_without_excel_cells_are_left_alone(tmp_path: Path) -> None:
    rows = _csv(tmp_path, [_part(tmp_path, 0, [(0, "book", {}, {"a": "=1+1"})])])
    assert rows[1][3] == "=1+1"


@pytest.mark.parametrize("excel", [False, True])
def test_fast_and_general_line_conversion_agree(
    tmp_path: Path, excel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [
        _part(
            tmp_path,
            0,
            [(0, "book", {"h": "1"}, {"a": "x, y", "b": "2"}), (0, "book", {"h": "1"}, {"c": "3"})],
        ),
        _part(tmp_path, 1, [(1, "book", {}, {"b": "4"})]),
    ]
    fast = _csv(tmp_path, parts, excel)
    monkeypatch.setattr(table_merge, "_in_order_line", table_merge._reordered_line)
    assert _csv(tmp_path, parts, excel) == fast


def test_offsets_point_at_every_strided_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_merge, "PREVIEW_STRIDE", 2)
    parts = [_part(tmp_path, n, [(n, "book", {}, {"a": f"{n}-{i}"}) for i in range(3)]) for n in range(2)]
    (plan,) = plan_tables(parts)
    fragments = [
        write_fragment(FragmentTask(s, plan.record_type, plan.columns, SOURCES, False, tmp_path / f"f{n}"))
        for n, s in enumerate(plan.parts)
    ]
    offsets = write_table(plan, fragments, tmp_path / "book.csv", False)
    data = (tmp_path / "book.csv").read_bytes()
    found = [
        (row, next(csv.reader([data[offset:].split(b"\r\n")[0].decode()]))[3]) for row, offset in offsets
    ]
    assert found == [(0, "0-0"), (2, "0-2"), (3, "1-0"), (5, "1-2")]


def test_a_plan_counts_rows_of_all_parts(tmp_path: Path) -> None:
    parts = [_part(tmp_path, n, [(n, "book", {}, {"a": "1"})] * 3) for n in range(2)]
    plans: list[TablePlan] = plan_tables(parts)
    assert plans[0].rows == 6


def _spooled(
    part: int, record_type: str, columns: list[str], context: list[str], rows: int = 1
) -> SpooledTable:
    return SpooledTable(record_type, Path(f"{part}-{record_type}.tsv"), part, rows, columns, context)


_NAMES = st.sampled_from(["a", "b", "c", "d", "head.x", "head.y"])
_TABLES = st.lists(
    st.tuples(
        st.sampled_from(["book", "journal"]),
        st.lists(_NAMES, unique=True),
        st.lists(st.sampled_from(["head.x", "head.y", "a"]), unique=True),
        st.integers(0, 2),
    ),
    max_size=2,
    unique_by=lambda table: table[0],
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TABLES, max_size=6), st.randoms(use_true_random=False))
def test_seeds_order_the_columns_as_the_plan_does(
    parts: list[list[tuple[str, list[str], list[str], int]]], random: Random
) -> None:
    tables = [
        [
            _spooled(part, kind, [*context, *[n for n in columns if n not in context]], context, rows)
            for kind, columns, context, rows in part_tables
        ]
        for part, part_tables in enumerate(parts)
    ]
    seeds = ColumnSeeds()
    order = list(range(len(tables)))
    random.shuffle(order)
    for part in order:  # parts finish in any order; they are merged in part order
        seeds.finished(part, tables[part])
    assert seeds.merged == len(tables)
    expected = {plan.record_type: plan.columns for plan in plan_tables(tables)}
    assert {kind: columns for kind, (columns, _) in seeds.seed().items()} == expected
    assert all(columns[: len(context)] == context for columns, context in seeds.seed().values())


def test_a_part_finished_early_waits_for_the_parts_before_it() -> None:
    seeds = ColumnSeeds()
    seeds.finished(1, [_spooled(1, "book", ["b"], [])])
    assert (seeds.seed(), seeds.merged) == ({}, 0)
    seeds.finished(0, [_spooled(0, "book", ["a"], [])])
    assert (seeds.seed(), seeds.merged) == ({"book": (["a", "b"], [])}, 2)


def test_a_part_that_passes_nothing_on_still_lets_later_parts_merge() -> None:
    seeds = ColumnSeeds()
    seeds.finished(1, [_spooled(1, "book", ["b"], [])])
    seeds.finished(0, None)
    assert seeds.seed() == {"book": (["b"], [])}


def test_a_seed_is_rebuilt_only_when_a_part_adds_columns() -> None:
    seeds = ColumnSeeds()
    seeds.finished(0, [_spooled(0, "book", ["a"], [])])
    first = seeds.seed()
    seeds.finished(1, [_spooled(1, "book", ["a"], [])])
    assert seeds.seed() is first
    seeds.finished(2, [_spooled(2, "book", ["a", "b"], [])])
    assert seeds.seed() == {"book": (["a", "b"], [])}


def test_seeds_are_bounded_by_record_type(tmp_path: Path) -> None:
    seeds = ColumnSeeds(max_columns=3)
    seeds.finished(0, [_spooled(0, "a", ["x", "y"], []), _spooled(0, "b", ["z", "w"], [])])
    assert seeds.seed() == {"a": (["x", "y"], [])}


def test_a_part_seeded_with_the_parts_before_it_needs_no_reordering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [(0, "book", {"head.id": "1"}, {"b": "x", "a": "y"}), (0, "book", {"head.id": "1"}, {"c": "z"})]
    first = _part(tmp_path, 0, rows)
    seeds = ColumnSeeds()
    seeds.finished(0, first)
    writer = PartWriter(tmp_path, 1, seeds.seed())
    writer.add(1, 1, Record("book", {"head.id": "2"}, {"c": "w", "a": "v"}))  # another order
    second = writer.close()
    (plan,) = plan_tables([first, second])
    assert second[0].columns == plan.columns  # in the final order already
    monkeypatch.setattr(table_merge, "_reordered_line", None)  # the re-ordering path is not taken
    fragment = write_fragment(FragmentTask(second[0], "book", plan.columns, SOURCES, False, tmp_path / "f"))
    assert fragment.path.read_bytes() == b'"b, with comma.xml",1,book,2,,v,w\r\n'
