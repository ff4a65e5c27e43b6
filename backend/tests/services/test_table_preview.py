"""Paged rows of a converted table: seeks through the row-offset index, reads from the start
without it, and refuses unknown tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.services import table_merge
from api.services.table_preview import TableNotFoundError, read_page
from tests.support.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setattr(table_merge, "PREVIEW_STRIDE", 7)
    space = Workspace(tmp_path)
    for n in range(3):
        items = "".join(f"<item><n>{n}-{i}</n><note>a, b</note></item>" for i in range(20))
        space.upload(f"{n}.xml", f"<list>{items}</list>".encode())
    space.convert()
    return space


def _manifest(workspace: Workspace) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(workspace.outputs()["manifest.json"])
    return manifest


def test_a_page_has_the_header_and_the_rows_asked_for(workspace: Workspace) -> None:
    page = read_page(workspace.area("output"), _manifest(workspace), "item", 18, 4)
    assert page.columns == ["source_file", "record_index", "record_type", "n", "note"]
    assert page.rows == [
        ["0.xml", "19", "item", "0-18", "a, b"],
        ["0.xml", "20", "item", "0-19", "a, b"],
        ["1.xml", "1", "item", "1-0", "a, b"],
        ["1.xml", "2", "item", "1-1", "a, b"],
    ]
    assert page.total == 60


def test_every_offset_reads_the_same_rows_with_or_without_the_index(workspace: Workspace) -> None:
    output = workspace.area("output")
    indexed = [read_page(output, _manifest(workspace), "item", offset, 3).rows for offset in range(62)]
    for index in (output / ".tables").iterdir():
        index.unlink()
    assert [
        read_page(output, _manifest(workspace), "item", offset, 3).rows for offset in range(62)
    ] == indexed
    assert indexed[59] == [["2.xml", "20", "item", "2-19", "a, b"]]
    assert indexed[60] == []


def test_an_unknown_record_type_is_not_found(workspace: Workspace) -> None:
    with pytest.raises(TableNotFoundError):
        read_page(workspace.area("output"), _manifest(workspace), "book", 0, 10)
