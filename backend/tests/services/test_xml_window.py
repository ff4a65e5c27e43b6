"""Splitting a large document's records into byte ranges: exact partition, balanced work, early stop."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from api.services.xml_names import NameCache
from api.services.xml_records import read_record_range, read_records
from api.services.xml_selection import Record
from api.services.xml_stream import stream_records
from api.services.xml_window import PARSE_SHARE, ByteRange, CountingReader, Place, range_share, split

HEAD = "<head><doi_batch_id>big</doi_batch_id></head>"


def _deposit(records: int, separator: str = "\n") -> bytes:
    body = separator.join(
        f'<book n="{n}"><titles><title>Title {n} {"x" * (n % 97)}</title></titles></book>'
        if n % 3
        else f"<journal><issn>{n:08d}</issn></journal>"
        for n in range(records)
    )
    return (
        f'<doi_batch xmlns="http://www.crossref.org/schema/5.3.1">{HEAD}<body>{body}</body></doi_batch>'
    ).encode()


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "large.xml"
    path.write_bytes(data)
    return path


def _whole(path: Path, record_path: tuple[str, ...] | None = None) -> list[tuple[int, Record]]:
    # The reference: the whole document parsed at once (not streamed), so ranges are checked
    # against the other way of reading records.
    records = read_records(path, path.stat().st_size, record_path, NameCache(), whole_document_bytes=1 << 40)
    return list(enumerate(records, start=1))


def test_streaming_the_whole_document_gives_its_records(tmp_path: Path) -> None:
    path = _write(tmp_path, _deposit(3000))
    assert list(enumerate(stream_records(path, None, NameCache()), start=1)) == _whole(path)


def _by_ranges(
    path: Path, ranges: list[ByteRange], record_path: tuple[str, ...] | None = None
) -> list[tuple[int, Record]]:
    return [
        pair
        for byte_range in ranges
        for pair in read_record_range(path, record_path, NameCache(), byte_range)
    ]


def _ranges(bounds: list[int]) -> list[ByteRange]:
    edges = [0, *bounds, None]
    return [ByteRange(k, len(edges) - 1, edges[k] or 0, edges[k + 1]) for k in range(len(edges) - 1)]


def test_split_covers_the_document_with_increasing_bounds() -> None:
    ranges = split(1_000_000, 3)
    assert [r.index for r in ranges] == [0, 1, 2]
    assert ranges[0].start == 0
    assert ranges[-1].stop is None
    assert ranges[-1].last
    assert [r.stop for r in ranges[:-1]] == [r.start for r in ranges[1:]]
    assert 0 < ranges[1].start < ranges[2].start < 1_000_000


def test_split_gives_each_range_the_same_work() -> None:
    share, size = 0.25, 1_200_000
    ranges = split(size, 4, share)
    ends = [r.stop if r.stop is not None else size for r in ranges]
    costs = [share * end + (1 - share) * (end - r.start) for r, end in zip(ranges, ends, strict=True)]
    assert max(costs) - min(costs) < 2  # equal but for rounding to whole bytes


def test_split_into_one_range_is_the_whole_document() -> None:
    assert split(500, 1) == [ByteRange(0, 1, 0, None)]
    with pytest.raises(ValueError, match="at least one range"):
        split(500, 0)


def test_a_record_is_placed_by_the_bytes_read_when_it_ended() -> None:
    middle = ByteRange(1, 3, 100, 200)
    assert [middle.place(p) for p in (1, 100, 101, 200, 201)] == [
        Place.SKIP,
        Place.SKIP,
        Place.TAKE,
        Place.TAKE,
        Place.STOP,
    ]
    assert ByteRange(2, 3, 200, None).place(10**12) is Place.TAKE


def test_the_counting_reader_counts_what_was_read() -> None:
    reader = CountingReader(io.BytesIO(b"abcdef"))
    assert reader.read(4) == b"abcd"
    assert reader.position == 4
    assert reader.read(10) == b"ef"
    assert reader.position == 6


@pytest.mark.parametrize("separator", ["\n", ""], ids=["lines", "one-line"])
@pytest.mark.parametrize("count", [2, 3, 5])
def test_the_ranges_of_split_give_every_record_once_in_order(
    tmp_path: Path, separator: str, count: int
) -> None:
    path = _write(tmp_path, _deposit(3000, separator))
    whole = _whole(path)
    ranges = split(path.stat().st_size, count)
    assert _by_ranges(path, ranges) == whole
    assert all(next(read_record_range(path, None, NameCache(), r), None) for r in ranges)  # none empty


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 400_000), max_size=6).map(sorted))
def test_any_bounds_partition_the_records_with_their_indexes(tmp_path: Path, bounds: list[int]) -> None:
    path = tmp_path / "large.xml"
    if not path.exists():
        path.write_bytes(_deposit(3000))
    assert _by_ranges(path, _ranges(bounds)) == _whole(path)


def test_a_record_path_is_split_the_same_way(tmp_path: Path) -> None:
    path = _write(tmp_path, _deposit(2000))
    steps = ("doi_batch", "body", "book")
    assert _by_ranges(path, split(path.stat().st_size, 3), steps) == _whole(path, steps)


def test_a_range_before_the_end_stops_reading_and_the_last_one_reads_everything(tmp_path: Path) -> None:
    data = _deposit(3000)
    path = _write(tmp_path, data[: -len("</doi_batch>")] + b"<broken")  # malformed at the very end
    first, last = split(len(data), 2)
    taken = list(read_record_range(path, None, NameCache(), first))
    assert taken
    assert taken[0][0] == 1
    with pytest.raises(etree.XMLSyntaxError):
        list(read_record_range(path, None, NameCache(), last))


def test_every_range_sees_the_head_context(tmp_path: Path) -> None:
    path = _write(tmp_path, _deposit(2000))
    for byte_range in split(path.stat().st_size, 3):
        index, record = next(read_record_range(path, None, NameCache(), byte_range))
        assert record.context == {"head.doi_batch_id": "big"}
        assert index >= 1


def test_a_namespace_declared_below_the_root_is_named_as_in_the_whole_document(tmp_path: Path) -> None:
    # Its prefix is the one of its first use in the document: a later range must learn it from the
    # records it skips, or it would name the namespace after the prefix it meets first.
    records = "\n".join(
        f'<rec n="{n}"><{p}:x xmlns:{p}="urn:u">{n}</{p}:x><pad>{"p" * 100}</pad></rec>'
        for n, p in ((n, "a" if n < 1500 else "b") for n in range(3000))
    )
    path = _write(tmp_path, f"<root>{records}</root>".encode())
    whole = _whole(path)
    assert {name for _, record in whole for name in record.values} == {"@n", "a:x", "pad"}
    assert _by_ranges(path, split(path.stat().st_size, 2)) == whole


def _late_namespace_document(split_at: int) -> bytes:
    """Records padded so that the first late declaration's ``xmlns`` straddles byte ``split_at``,
    first used with prefix a, later with prefix b (the whole document names it a)."""
    head = b"<root>"
    filler = b"<rec><pad>" + b"p" * 100 + b"</pad></rec>"
    records = head
    while len(records) + len(filler) < split_at - 40:
        records += filler
    padding = split_at - len(records) - len(b"<rec><pad></pad><a:x ") - 2
    records += b"<rec><pad>" + b"q" * padding + b"</pad>"
    records += b'<a:x xmlns:a="urn:u">1</a:x></rec>'
    records += b"".join(b'<rec><b:x xmlns:b="urn:u">2</b:x></rec>' for _ in range(3000))
    return records + b"</root>"


@pytest.mark.parametrize("offset", range(-3, 3))
def test_a_late_declaration_split_between_two_chunks_is_still_learnt(tmp_path: Path, offset: int) -> None:
    from api.services.xml_stream import CHUNK_BYTES

    data = _late_namespace_document(CHUNK_BYTES + offset)
    assert b"xmlns" not in data[: CHUNK_BYTES - 5]
    assert b"xmlns" in data[CHUNK_BYTES - 5 : CHUNK_BYTES + 5]
    path = _write(tmp_path, data)
    whole = _whole(path)
    assert {name for _, record in whole for name in record.values} == {"pad", "a:x"}
    last = len(data) - 2000
    assert _by_ranges(path, _ranges([last])) == whole  # the second range skips the first use


def test_late_declarations_are_counted_across_chunks_and_past_the_root() -> None:
    from api.services.xml_stream import LateDeclarations

    root = etree.fromstring('<r xmlns="urn:d" xmlns:x="urn:x"/>')
    declarations = LateDeclarations()
    declarations.read(b'<r xmlns="urn:d" xmlns:x="urn:x"><a>')
    declarations.root(root)
    assert not declarations.possible  # only the root's two
    declarations.read(b"<b xm")
    assert not declarations.possible
    declarations.read(b'lns:y="urn:y"/>')
    assert declarations.possible  # a third, split between two chunks


def test_an_encoding_that_hides_xmlns_always_learns() -> None:
    from api.services.xml_stream import LateDeclarations

    data = '<?xml version="1.0" encoding="UTF-16"?><r xmlns="urn:d"/>'.encode("utf-16")
    declarations = LateDeclarations()
    declarations.read(data)
    declarations.root(etree.fromstring(data))
    assert declarations.possible


def test_a_utf16_document_split_learns_late_namespaces_as_a_whole_one(tmp_path: Path) -> None:
    records = "".join(
        f'<rec n="{n}"><{p}:x xmlns:{p}="urn:u">{n}</{p}:x><pad>{"p" * 100}</pad></rec>'
        for n, p in ((n, "a" if n < 1500 else "b") for n in range(3000))
    )
    path = _write(tmp_path, f'<?xml version="1.0" encoding="UTF-16"?><root>{records}</root>'.encode("utf-16"))
    whole = _whole(path)
    assert {name for _, record in whole for name in record.values} == {"@n", "a:x", "pad"}
    assert _by_ranges(path, split(path.stat().st_size, 2)) == whole


@pytest.mark.parametrize(
    ("layout", "records"),
    [
        (f"{HEAD}<other>o</other><body>{{body}}</body><tail>t</tail>", 600),
        (f"<body>{{body}}</body>{HEAD}", 600),  # head after body: no record gets its context
        ("<other>o</other>" * 5000, 0),  # no body: nothing to convert, and nothing kept
    ],
    ids=["between-and-after", "head-after-body", "no-body"],
)
def test_crossref_children_of_the_root_stream_as_in_the_whole_document(
    tmp_path: Path, layout: str, records: int
) -> None:
    body = "".join(f'<book n="{n}"><t>{"x" * (n % 50)}</t></book>' for n in range(records))
    content = layout.replace("{body}", body)
    path = _write(tmp_path, f'<doi_batch xmlns="urn:c">{content}</doi_batch>'.encode())
    whole = _whole(path)
    assert len(whole) == records
    assert list(enumerate(stream_records(path, None, NameCache()), start=1)) == whole
    assert _by_ranges(path, split(path.stat().st_size, 3)) == whole


def test_range_share_is_the_work_of_each_range_split_makes() -> None:
    assert range_share(1) == 1.0
    assert range_share(2) == pytest.approx(0.6)  # parsing is a third: two halves of 1.2 in all
    size = 1_000_000
    for count in (2, 3, 5):
        ends = [(r.start / size, (r.stop or size) / size) for r in split(size, count)]
        costs = [PARSE_SHARE * end + (1 - PARSE_SHARE) * (end - start) for start, end in ends]
        assert costs == pytest.approx([range_share(count)] * count, rel=1e-4)
