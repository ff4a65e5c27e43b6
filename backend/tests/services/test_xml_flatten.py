"""The flattening rules of issue 8, each pinned on a small document (records are root children)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from api.services import xml_flatten, xml_names
from api.services.xml_flatten import collapse, flatten
from api.services.xml_names import NameCache
from tests.support.xml_rows import only, values

JATS = 'xmlns:jats="http://www.ncbi.nlm.nih.gov/JATS1"'


def test_descendants_are_dot_joined_paths_relative_to_the_record(tmp_path: Path) -> None:
    xml = "<r><book><contributors><person_name><surname>Ada</surname></person_name></contributors></book></r>"
    assert only(tmp_path, xml) == {"contributors.person_name.surname": "Ada"}


def test_record_attributes_are_named_with_an_at(tmp_path: Path) -> None:
    assert only(tmp_path, '<r><book book_type="edited_book"/></r>') == {"@book_type": "edited_book"}


def test_descendant_attributes_are_path_at_name(tmp_path: Path) -> None:
    xml = '<r><book><isbn media_type="print">978</isbn></book></r>'
    assert only(tmp_path, xml) == {"isbn@media_type": "print", "isbn": "978"}


def test_repeated_siblings_are_numbered_in_document_order(tmp_path: Path) -> None:
    xml = "<r><book><a><n>1</n><n>2</n><n>3</n></a></book></r>"
    assert only(tmp_path, xml) == {"a.n[1]": "1", "a.n[2]": "2", "a.n[3]": "3"}


def test_a_name_that_occurs_once_has_no_index(tmp_path: Path) -> None:
    xml = "<r><book><n>1</n><m>x</m><n>2</n></book></r>"
    assert only(tmp_path, xml) == {"n[1]": "1", "m": "x", "n[2]": "2"}


def test_repeats_are_counted_under_each_parent(tmp_path: Path) -> None:
    xml = "<r><b><p><g>A</g></p><p><g>B</g><g>C</g></p></b></r>"
    assert only(tmp_path, xml) == {"p[1].g": "A", "p[2].g[1]": "B", "p[2].g[2]": "C"}


def test_prefixed_names_keep_the_prefix(tmp_path: Path) -> None:
    xml = f"<r {JATS}><book><jats:abstract><jats:p>Text</jats:p></jats:abstract></book></r>"
    assert only(tmp_path, xml) == {"jats:abstract.jats:p": "Text"}


def test_the_prefix_is_the_one_the_document_uses(tmp_path: Path) -> None:
    xml = '<r xmlns:j="http://www.ncbi.nlm.nih.gov/JATS1"><book><j:title>T</j:title></book></r>'
    assert only(tmp_path, xml) == {"j:title": "T"}


def test_the_default_namespace_has_no_prefix(tmp_path: Path) -> None:
    xml = '<r xmlns="http://www.crossref.org/schema/5.3.1"><book><title>T</title></book></r>'
    assert only(tmp_path, xml) == {"title": "T"}


def test_xml_lang_is_named_with_its_prefix(tmp_path: Path) -> None:
    assert only(tmp_path, '<r><book><t xml:lang="en">T</t></book></r>') == {"t@xml:lang": "en", "t": "T"}


def test_prefixed_attributes_keep_their_prefix(tmp_path: Path) -> None:
    xml = '<r xmlns:x="urn:x"><book x:id="7"/></r>'
    assert only(tmp_path, xml) == {"@x:id": "7"}


def test_a_namespace_declared_below_the_root_uses_its_prefix(tmp_path: Path) -> None:
    xml = '<r><book><m:t xmlns:m="urn:m">T</m:t><m:t xmlns:m="urn:m">U</m:t></book></r>'
    assert only(tmp_path, xml) == {"m:t[1]": "T", "m:t[2]": "U"}


def test_same_names_in_different_namespaces_are_numbered_together(tmp_path: Path) -> None:
    # One unqualified, one in the default namespace: both are named "t", so they are numbered.
    xml = '<r xmlns="urn:d"><book><t>A</t><t xmlns="">B</t></book></r>'
    assert only(tmp_path, xml) == {"t[1]": "A", "t[2]": "B"}


def test_whitespace_is_collapsed_and_trimmed(tmp_path: Path) -> None:
    xml = "<r><book><t>\n   A  \t long\r\n title   </t></book></r>"
    assert only(tmp_path, xml) == {"t": "A long title"}


def test_only_xml_whitespace_is_collapsed() -> None:
    assert collapse("  J.\u00a0Smith \n et  al. ") == "J.\u00a0Smith et al."


def test_mixed_content_holds_its_full_text_in_document_order(tmp_path: Path) -> None:
    xml = "<r><book><p>The <i>quick</i> fox <b>jumps</b>.</p></book></r>"
    assert only(tmp_path, xml)["p"] == "The quick fox jumps."


def test_children_of_mixed_content_keep_their_own_columns(tmp_path: Path) -> None:
    xml = "<r><book><p>The <i>quick</i> fox</p></book></r>"
    assert only(tmp_path, xml) == {"p": "The quick fox", "p.i": "quick"}


def test_text_only_between_children_makes_content_mixed(tmp_path: Path) -> None:
    xml = "<r><book><p><i>quick</i> fox</p></book></r>"
    assert only(tmp_path, xml) == {"p": "quick fox", "p.i": "quick"}


def test_indentation_does_not_make_content_mixed(tmp_path: Path) -> None:
    xml = "<r>\n <book>\n  <p>\n   <i>x</i>\n  </p>\n </book>\n</r>"
    assert only(tmp_path, xml) == {"p.i": "x"}


def test_empty_values_make_no_column(tmp_path: Path) -> None:
    xml = '<r><book a=" "><t/><u>   </u><v></v><w>x</w></book></r>'
    assert only(tmp_path, xml) == {"w": "x"}


def test_comments_and_processing_instructions_are_ignored(tmp_path: Path) -> None:
    xml = "<r><book><t>ab<!-- note -->cd<?pi data?></t><!-- gone --><?gone?></book></r>"
    assert only(tmp_path, xml) == {"t": "abcd"}


def test_text_of_the_record_itself_is_the_text_column(tmp_path: Path) -> None:
    assert values(tmp_path, "<r><item>one</item><item>two</item></r>") == [{"#text": "one"}, {"#text": "two"}]


def test_columns_follow_document_order(tmp_path: Path) -> None:
    xml = '<r><book><a x="1"><b>2</b></a><c>3</c></book></r>'
    assert list(only(tmp_path, xml)) == ["a@x", "a.b", "c"]


def test_nothing_is_truncated(tmp_path: Path) -> None:
    text = "word " * 20_000
    assert only(tmp_path, f"<r><book><t>{text}</t></book></r>") == {"t": text.strip()}


def test_paths_from_lxml_and_from_python_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xml = (
        f'<r xmlns="urn:d" {JATS}><book x="1"><c><p s="a"><g>A</g></p><p><g>B</g><g>C</g></p></c>'
        "<jats:abstract><jats:p>x <jats:i>y</jats:i> z</jats:p><jats:p>w</jats:p></jats:abstract></book></r>"
    )
    fast = only(tmp_path, xml)
    monkeypatch.setattr(xml_flatten, "FAST_PATH_MAX_ELEMENTS", 0)
    assert list(only(tmp_path, xml).items()) == list(fast.items())


def test_wide_records_are_flattened_in_linear_time() -> None:
    # lxml's getelementpath scans siblings (quadratic); past the limit Python numbers them.
    record = etree.fromstring("<book>" + "<n>v</n>" * 50_000 + "</book>")
    started = time.monotonic()
    row = flatten(record, NameCache().for_root(record))
    assert time.monotonic() - started < 5
    assert len(row) == 50_000
    assert row["n[50000]"] == "v"


def _records(xml: str) -> tuple[list[etree._Element], NameCache]:
    root = etree.fromstring(xml)
    return list(root), NameCache()


def test_records_of_one_shape_share_their_paths() -> None:
    records, cache = _records(
        "<r><book><a>1</a><a>2</a><b>3</b></book><book><a>4</a><a>5</a><b>6</b></book></r>"
    )
    names = cache.for_root(records[0].getparent())
    assert [flatten(record, names) for record in records] == [
        {"a[1]": "1", "a[2]": "2", "b": "3"},
        {"a[1]": "4", "a[2]": "5", "b": "6"},
    ]
    assert len(names.shapes) == 1


def test_the_same_tags_in_another_tree_get_their_own_paths() -> None:
    # Tags a, b in document order, as siblings and as parent and child: the child counts tell them apart.
    records, cache = _records("<r><book><a>1</a><b>2</b></book><book><a>x<b>3</b></a></book></r>")
    names = cache.for_root(records[0].getparent())
    assert [flatten(record, names) for record in records] == [{"a": "1", "b": "2"}, {"a": "x3", "a.b": "3"}]
    assert len(names.shapes) == 2


def test_records_named_with_a_late_declared_namespace_are_not_cached() -> None:
    records, cache = _records('<r><book><x:t xmlns:x="urn:late">1</x:t></book></r>')
    names = cache.for_root(records[0].getparent())
    assert flatten(records[0], names) == {"x:t": "1"}
    assert names.shapes == {}


_TAGS = st.sampled_from(["a", "b", "{urn:d}c"])


@st.composite
def _trees(draw: st.DrawFn, depth: int = 0) -> str:
    tag = draw(_TAGS)
    name = f"d:{tag[7:]}" if tag.startswith("{") else tag
    children = draw(st.lists(_trees(depth + 1), max_size=3)) if depth < 3 else []
    return f"<{name}>{len(children)}{''.join(children)}</{name}>"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_trees(), min_size=1, max_size=6),
    st.sampled_from(['xmlns:d="urn:d"', 'xmlns="urn:d" xmlns:d="urn:d"']),
)
def test_cached_paths_are_the_paths_of_each_record(bodies: list[str], declarations: str) -> None:
    xml = f"<r {declarations}>{''.join(f'<book>{body}</book>' for body in bodies)}</r>"
    shared = NameCache()
    root = etree.fromstring(xml)
    with_cache = [flatten(record, shared.for_root(root)) for record in root]
    alone = [flatten(record, NameCache().for_root(root)) for record in root]  # nothing cached yet
    assert with_cache == alone


def test_large_records_are_not_cached_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xml_names, "MAX_CACHED_SHAPE_ELEMENTS", 5)
    large = "".join(f"<n{i}>v</n{i}>" for i in range(xml_flatten.SHAPE_MAX_ELEMENTS + 1))
    records, cache = _records(
        f"<r><book>{large}</book><book><a>1</a><b>2</b></book><book><c>3</c></book></r>"
    )
    names = cache.for_root(records[0].getparent())
    flatten(records[0], names)
    assert names.shapes == {}  # too large to cache
    flatten(records[1], names)
    assert (len(names.shapes), names.shape_elements) == (1, 2)
    flatten(records[2], names)  # 2 + 1 elements fit in 5
    assert (len(names.shapes), names.shape_elements) == (2, 3)
    flatten(records[1], names)  # cached: nothing added
    flatten(etree.fromstring("<book><x/><y>1</y><z>2</z></book>"), names)  # 3 more pass 5: emptied first
    assert (len(names.shapes), names.shape_elements) == (1, 3)


def test_caching_a_shape_keeps_the_names_a_document_gave_its_late_namespaces() -> None:
    # urn:late is first used with prefix x; a record cached in between must not make it forget that.
    xml = (
        '<r><book><x:t xmlns:x="urn:late">1</x:t></book><book><a>2</a></book>'
        '<book><y:t xmlns:y="urn:late">3</y:t></book></r>'
    )
    records, cache = _records(xml)
    names = cache.for_root(records[0].getparent())
    assert [flatten(record, names) for record in records] == [{"x:t": "1"}, {"a": "2"}, {"x:t": "3"}]
