"""The records of one XML document (rules in ``api.services.xml_selection``), with its context.

A document up to ``whole_document_bytes`` is parsed at once (fastest); a larger one incrementally
(``api.services.xml_stream``), each finished record cleared, so memory stays bounded by the largest
record. Either way the document is first checked for a DOCTYPE (``api.services.xml_safety``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from lxml import etree

from api.services import xml_safety
from api.services.xml_flatten import flatten
from api.services.xml_names import Element, NameCache
from api.services.xml_selection import Record, context, crossref_head, is_crossref, matches, record_steps, tag
from api.services.xml_stream import stream_range, stream_records
from api.services.xml_window import ByteRange

# Larger documents are parsed incrementally (a parsed tree takes about ten times the file's size).
WHOLE_DOCUMENT_BYTES: Final = 8 * 1024 * 1024


def read_records(
    path: Path,
    size: int,
    record_path: tuple[str, ...] | None,
    names: NameCache,
    whole_document_bytes: int = WHOLE_DOCUMENT_BYTES,
) -> Iterator[Record]:
    """The records of the XML document at ``path`` (``size`` bytes long), in document order.

    Raises:
        RefusedDocumentError: the document declares a DOCTYPE.
        etree.XMLSyntaxError: the document is malformed (possibly after some records were yielded,
            when it is parsed incrementally).
    """
    if size <= whole_document_bytes:
        return document_records(read_document(path, size), record_path, names)
    with path.open("rb") as handle:
        head = handle.read(xml_safety.PROLOG_LIMIT)
    xml_safety.check_prolog(head, complete=False)
    return stream_records(path, record_path, names)


def read_document(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of a document to be parsed whole (all of it, if it is shorter)."""
    # Straight from a descriptor: a buffered file object cost twice as much (16 µs a file against
    # 9 µs), and a job reads thousands of small deposits. Exactly ``size`` is asked for: reading
    # "everything" would grow a buffer for a 5 KB deposit.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        data = os.read(descriptor, size)
        if 0 < len(data) < size:  # a short read (rare for a regular file): on to size or the end
            chunks, missing = [data], size - len(data)
            while missing and (chunk := os.read(descriptor, missing)):
                chunks.append(chunk)
                missing -= len(chunk)
            data = b"".join(chunks)
    finally:
        os.close(descriptor)
    return data


def document_records(data: bytes, record_path: tuple[str, ...] | None, names: NameCache) -> Iterator[Record]:
    """The records of a whole document held in memory (``read_records`` for one already read).

    Raises: as ``read_records``.
    """
    xml_safety.check_prolog(data, complete=True)
    return _whole(data, record_path, names)


def read_record_range(
    path: Path, record_path: tuple[str, ...] | None, names: NameCache, byte_range: ByteRange
) -> Iterator[tuple[int, Record]]:
    """(record index, record) for the records of one range of a large document (always parsed
    incrementally; ``api.services.xml_window``).

    Raises: as ``read_records``.
    """
    with path.open("rb") as handle:
        head = handle.read(xml_safety.PROLOG_LIMIT)
    xml_safety.check_prolog(head, complete=len(head) < xml_safety.PROLOG_LIMIT)
    return stream_range(path, record_path, names, byte_range)


def _whole(data: bytes, record_path: tuple[str, ...] | None, cache: NameCache) -> Iterator[Record]:
    root = etree.fromstring(data, xml_safety.parser())
    xml_safety.check_docinfo(root.getroottree())
    names = cache.for_root(root)
    steps = record_steps(root, record_path)
    head = crossref_head(root) if is_crossref(root) else None
    head_context = context(head, names) if head is not None else {}
    level = [root] if matches(steps[0], root, names) else []
    for step in steps[1:]:
        level = [child for parent in level for child in parent if matches(step, child, names)]
    for record in level:
        follows_head = head is not None and _after(record, head, root)
        yield Record(
            names.element(record, tag(record)), head_context if follows_head else {}, flatten(record, names)
        )


def _after(record: Element, head: Element, root: Element) -> bool:
    """Whether ``record`` comes after ``head`` ends (both below the root)."""
    if record is root:
        return False
    top = record
    while (parent := top.getparent()) is not root and parent is not None:
        top = parent
    return root.index(top) > root.index(head)
