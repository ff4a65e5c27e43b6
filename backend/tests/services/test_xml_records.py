"""Which elements are records, Crossref head context, record paths, and incremental parsing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lxml import etree

from api.services import xml_records
from tests.support.xml_rows import records

CROSSREF = """<?xml version="1.0" encoding="UTF-8"?>
<doi_batch xmlns="http://www.crossref.org/schema/5.3.1" version="5.3.1">
  <head>
    <doi_batch_id>b-1</doi_batch_id>
    <depositor><depositor_name>Press</depositor_name></depositor>
  </head>
  <body>
    <book book_type="monograph"><titles><title>One</title></titles></book>
    <journal><journal_metadata><full_title>Two</full_title></journal_metadata></journal>
    <book><titles><title>Three</title></titles></book>
  </body>
</doi_batch>
"""
GENERIC = "<catalogue><item id='1'><name>A</name></item><entry><name>B</name></entry></catalogue>"


def test_crossref_records_are_the_children_of_body(tmp_path: Path) -> None:
    found = records(tmp_path, CROSSREF)
    assert [record.record_type for record in found] == ["book", "journal", "book"]
    assert found[2].values == {"titles.title": "Three"}


def test_crossref_head_is_context_on_every_row(tmp_path: Path) -> None:
    context = {"head.doi_batch_id": "b-1", "head.depositor.depositor_name": "Press"}
    assert all(record.context == context for record in records(tmp_path, CROSSREF))


def test_a_crossref_root_is_recognised_in_any_namespace(tmp_path: Path) -> None:
    xml = (
        '<cr:doi_batch xmlns:cr="urn:other"><cr:head><cr:id>7</cr:id></cr:head>'
        "<cr:body><cr:book/></cr:body></cr:doi_batch>"
    )
    (record,) = records(tmp_path, xml)
    assert (record.record_type, record.context) == ("cr:book", {"cr:head.cr:id": "7"})


def test_records_of_other_documents_are_the_children_of_the_root(tmp_path: Path) -> None:
    found = records(tmp_path, GENERIC)
    assert [(record.record_type, record.values) for record in found] == [
        ("item", {"@id": "1", "name": "A"}),
        ("entry", {"name": "B"}),
    ]
    assert all(record.context == {} for record in found)


def test_a_record_path_names_the_records(tmp_path: Path) -> None:
    found = records(tmp_path, CROSSREF, ("doi_batch", "body", "book"))
    assert [record.values["titles.title"] for record in found] == ["One", "Three"]


def test_a_star_step_matches_any_element(tmp_path: Path) -> None:
    found = records(tmp_path, CROSSREF, ("*", "*", "*"))
    assert [record.record_type for record in found] == [
        "doi_batch_id",
        "depositor",
        "book",
        "journal",
        "book",
    ]


def test_a_prefixed_step_matches_the_prefixed_name(tmp_path: Path) -> None:
    xml = '<r xmlns:j="urn:j"><j:a>1</j:a><a>2</a></r>'
    assert [record.values for record in records(tmp_path, xml, ("r", "j:a"))] == [{"#text": "1"}]


def test_an_unprefixed_step_matches_the_local_name(tmp_path: Path) -> None:
    xml = '<r xmlns:j="urn:j"><j:a>1</j:a><a>2</a></r>'
    assert len(records(tmp_path, xml, ("r", "a"))) == 2


def test_a_record_path_keeps_crossref_context_outside_head(tmp_path: Path) -> None:
    found = records(tmp_path, CROSSREF, ("doi_batch", "*", "*"))
    assert [bool(record.context) for record in found] == [False, False, True, True, True]


def test_a_path_that_matches_nothing_gives_no_records(tmp_path: Path) -> None:
    assert records(tmp_path, CROSSREF, ("other", "*")) == []


@pytest.mark.parametrize(
    ("xml", "record_path"),
    [
        (CROSSREF, None),
        (GENERIC, None),
        (CROSSREF, ("doi_batch", "*", "*")),
        (CROSSREF, ("doi_batch",)),
        ("<r><a>x<b>y</b>z</a><c/></r>", None),
    ],
)
def test_incremental_parsing_gives_the_same_records(
    tmp_path: Path, xml: str, record_path: tuple[str, ...] | None
) -> None:
    assert records(tmp_path, xml, record_path, stream=True) == records(tmp_path, xml, record_path)


@pytest.mark.parametrize("encoding", ["iso-8859-1", "windows-1252", "utf-16", "shift_jis"])
def test_declared_encodings_are_decoded(tmp_path: Path, encoding: str) -> None:
    text = {"utf-16": "Zürich – 東京", "shift_jis": "東京"}.get(encoding, "Zürich café")
    xml = f'<?xml version="1.0" encoding="{encoding}"?><r><book><t>{text}</t></book></r>'
    (record,) = records(tmp_path, xml.encode(encoding))
    assert record.values == {"t": text}


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_xml_raises_a_syntax_error(tmp_path: Path, stream: bool) -> None:
    with pytest.raises(etree.XMLSyntaxError):
        records(tmp_path, "<r><book><t>x</book></r>", stream=stream)


def test_a_document_is_read_whole_however_the_reads_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "d.xml"
    path.write_bytes(CROSSREF.encode())
    real_read = os.read
    monkeypatch.setattr(xml_records.os, "read", lambda fd, n: real_read(fd, min(n, 7)))  # short reads
    size = len(CROSSREF.encode())
    assert xml_records.read_document(path, size) == CROSSREF.encode()
    assert xml_records.read_document(path, 20) == CROSSREF.encode()[:20]  # never more than asked
    assert xml_records.read_document(path, size + 100) == CROSSREF.encode()  # a shorter file: all of it
