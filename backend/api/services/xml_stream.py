"""Incremental parsing of large documents: records yielded as they complete, then dropped.

Memory stays bounded by the largest record plus one chunk: the document is fed to the parser
``CHUNK_BYTES`` at a time, and after each chunk the complete records are flattened and deleted; a
Crossref ``head`` is kept whole and becomes the context of the records after it.

The document's own rules (``xml_selection``) need events for three elements only: the root, its
``head`` and its ``body`` (the record container, else the root itself). Everything else is parsed
in C without a Python object per element; a record is complete once the next one has started or
the container has ended. A request's record path needs the general walk over start and end events.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final, cast

from lxml import etree

from api.services import xml_safety
from api.services.xml_flatten import flatten
from api.services.xml_names import Element, NameCache, Names
from api.services.xml_selection import Record, context, is_crossref, local, matches, tag
from api.services.xml_window import ByteRange, CountingReader, Place, RecordWindow

PAST_RANGE: Final = Record("", {}, {})  # returned by _record for a record after the range
CHUNK_BYTES: Final = 32 * 1024  # read at a time (every range of a split document reads the same)


def stream_records(path: Path, record_path: tuple[str, ...] | None, cache: NameCache) -> Iterator[Record]:
    """The records of the document at ``path``, parsed incrementally.

    Raises:
        RefusedDocumentError: the parsed document still carries a DOCTYPE.
        etree.XMLSyntaxError: malformed, possibly after some records were yielded.
    """
    with path.open("rb") as source:  # closed however the caller stops iterating
        if record_path is None:
            yield from _by_rule(path, source, cache)
        else:
            yield from _by_path(source, record_path, cache)


def stream_range(
    path: Path, record_path: tuple[str, ...] | None, cache: NameCache, byte_range: ByteRange
) -> Iterator[tuple[int, Record]]:
    """(record index in the document, record) for the records of ``byte_range`` only
    (``api.services.xml_window``); the document is read no further than the range needs.

    Raises: as ``stream_records`` (the last range reads, and so checks, the whole document).
    """
    with path.open("rb") as raw:
        reader = CountingReader(raw)
        window = RecordWindow(byte_range, reader)
        records = (
            _by_rule(path, cast(BinaryIO, reader), cache, window)
            if record_path is None
            else _by_path(cast(BinaryIO, reader), record_path, cache, window)
        )
        for taken, record in enumerate(records, start=1):
            yield window.skipped + taken, record


def _by_rule(
    path: Path, source: BinaryIO, cache: NameCache, window: RecordWindow | None = None
) -> Iterator[Record]:
    """The records by the document's own rules (of ``window`` only, if given), read from
    ``source`` (the document at ``path``) ``CHUNK_BYTES`` at a time.

    Only the root, ``head`` and ``body`` raise events; everything else is parsed in C, without a
    Python object per element (skipping the records before a range costs about 40% less than with
    an event per element). A record is taken up once it is complete, which is known when the next
    record has started or its container has ended: its place is the bytes read at that moment. Every
    range of a document reads the same chunks, so the ranges still partition the records exactly.
    """
    parser = xml_safety.pull_parser(("start", "end"), [_root_tag(path), "{*}head", "{*}body"])
    root: Element | None = None
    container: Element | None = None  # the parent of the records: body, or the root itself
    names: Names | None = None
    head_context: dict[str, str] = {}
    ended = False  # the container has ended: its last record is complete too
    declarations = LateDeclarations()
    while True:
        data = source.read(CHUNK_BYTES)
        declarations.read(data)
        if data:
            parser.feed(data)
        else:
            parser.close()  # raises if the document is incomplete
        for event, element in parser.read_events():
            if root is None:  # the first event: the root's start, its declarations known
                root = element
                xml_safety.check_docinfo(root.getroottree())
                names = cache.for_root(root)
                container = None if is_crossref(root) else root
                declarations.root(root)
            elif event == "end" and element is container:
                ended = True
            elif element.getparent() is root and container is not root:  # Crossref: head or body
                if event == "start" and container is None and local(tag(element)) == "body":
                    container = element
                elif (
                    event == "end"
                    and container is None
                    and local(tag(element)) == "head"
                    and not head_context
                ):
                    assert names is not None
                    head_context = context(element, names)  # for the records after it only
        if root is not None and container is not root:
            # Crossref: the root's other finished children (head once read, anything beside body).
            for child in [child for child in root[: len(root) - 1] if child is not container]:
                root.remove(child)
        if container is not None and names is not None:
            complete = len(container) if ended else len(container) - 1
            if complete > 0:
                if window is not None:
                    window.learn = declarations.possible
                for element in container[:complete]:
                    record = _record(element, names, head_context, window)
                    if record is PAST_RANGE:
                        return
                    if record is not None:
                        yield record
                del container[:complete]
        if not data:
            return


class LateDeclarations:
    """Whether a namespace may be declared below the root in what has been read so far.

    A skipped record is read for the names of such namespaces (``Names.learn``, a Python walk over
    its elements that costs as much as the rest of skipping it); most documents declare every
    namespace on the root, which shows in their bytes: no more ``xmlns`` than the root's own
    declarations. The count can only err towards learning (``xmlns`` in text or comments), and
    any encoding that does not write ``xmlns`` as those five bytes (UTF-16, EBCDIC) always learns.
    """

    NEEDLE: Final = b"xmlns"

    def __init__(self) -> None:
        self.seen = 0  # occurrences in everything read so far
        self.possible = True  # until the root is known
        self._tail = b""
        self._searchable: bool | None = None  # decided from the first bytes
        self._root_declarations: int | None = None

    def read(self, data: bytes) -> None:
        if self._searchable is None:
            # From the bytes, not the parser: lxml reports the encoding only once parsing ends.
            self._searchable = xml_safety.writes_ascii_markup(data[: xml_safety.PROLOG_LIMIT])
        # The last bytes of the previous chunk catch a needle split between two chunks.
        self.seen += (self._tail + data).count(self.NEEDLE)
        self._tail = data[-(len(self.NEEDLE) - 1) :]
        self._decide()

    def root(self, root: Element) -> None:
        if self._searchable:
            self._root_declarations = len(root.nsmap)
            self.possible = False
            self._decide()

    def _decide(self) -> None:
        if self._root_declarations is not None and self.seen > self._root_declarations:
            self.possible = True


def _root_tag(path: Path) -> str:
    """The root element's tag (Clark notation), from the start of the document."""
    probe = xml_safety.pull_parser(("start",))
    with path.open("rb") as source:
        while data := source.read(CHUNK_BYTES):
            probe.feed(data)
            for _, element in probe.read_events():
                return cast(str, element.tag)
    raise etree.XMLSyntaxError("no root element", 0, 1, 1, str(path))


def _by_path(
    source: BinaryIO, steps: tuple[str, ...], cache: NameCache, window: RecordWindow | None = None
) -> Iterator[Record]:
    names: Names | None = None
    crossref = False
    head_context: dict[str, str] = {}  # Crossref head: known once head ends, for the records after it
    in_head = False  # head is kept whole until it ends
    on_path = [True]  # on_path[d]: the open element at depth d matches the first d steps
    depth = 0
    inside = False  # within a record: its descendants are kept until it ends
    for event, element in xml_safety.iterparse(source, ("start", "end")):
        if event == "start":
            depth += 1
            if depth == 1:
                xml_safety.check_docinfo(element.getroottree())
                names = cache.for_root(element)
                crossref = is_crossref(element)
            elif depth == 2 and crossref and not head_context:
                in_head = local(tag(element)) == "head"
            if not inside:
                assert names is not None
                matched = on_path[-1] and depth <= len(steps) and matches(steps[depth - 1], element, names)
                on_path.append(matched)
                inside = matched and depth == len(steps)
            continue
        if inside and depth > len(steps):
            depth -= 1
            continue
        assert names is not None
        if inside:
            record = _record(element, names, head_context, window)
            if record is PAST_RANGE:
                return
            if record is not None:
                yield record
            inside = False
        if in_head and depth == 2:
            head_context, in_head = context(element, names), False
        on_path.pop()
        if on_path[-1] and not in_head:
            _release(element)  # the top of a subtree that is done with: records, head, non-matching
        depth -= 1


def _record(
    element: Element, names: Names, head_context: dict[str, str], window: RecordWindow | None
) -> Record | None:
    """The record ``element`` ended, or for a range (``window``): None when it comes before the
    range (only its names are learnt), ``PAST_RANGE`` when after it (reading can stop)."""
    place = Place.TAKE if window is None else window.place()
    if place is Place.TAKE:
        return Record(names.element(element, tag(element)), head_context, flatten(element, names))
    if place is Place.STOP:
        return PAST_RANGE
    if window is None or window.learn:
        names.learn(element)
    return None


def _release(element: Element) -> None:
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]
