"""Which elements of a document are records, and the rows they make (with the file's context).

- A Crossref deposit (root ``doi_batch``, any namespace): every element child of ``body`` is a record,
  and ``head`` is context copied onto each row as ``head.*`` columns.
- Any other document: every element child of the root is a record.
- A request may name the records instead, with a path of element names from the root
  (``/doi_batch/body/*``, parsed by ``api.services.record_path``). A step matches an element by
  the name columns use (``jats:article``), by its local name when the step has no prefix, or
  always when it is ``*``. Crossref context still applies to records outside ``head``.

A document up to ``whole_document_bytes`` is parsed at once (fastest); a larger one incrementally
with ``iterparse``, each finished record cleared, so memory stays bounded by the largest record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from lxml import etree

from api.services import xml_safety
from api.services.xml_flatten import flatten
from api.services.xml_names import Element, NameCache, Names

CROSSREF_ROOT: Final = "doi_batch"
CROSSREF_RECORDS: Final = ("*", "body", "*")
GENERIC_RECORDS: Final = ("*", "*")
WHOLE_DOCUMENT_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    record_type: str
    context: dict[str, str]  # the same object for every record of a document
    values: dict[str, str]


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
    with path.open("rb") as handle:
        # Exactly what is needed: read(4 MiB) would allocate 4 MiB for a 5 KB deposit.
        head = handle.read(xml_safety.PROLOG_LIMIT if size > whole_document_bytes else size)
    xml_safety.check_prolog(head, complete=size <= whole_document_bytes)
    if size > whole_document_bytes:
        return _stream(path, record_path, names)
    return _whole(head, record_path, names)


def _whole(data: bytes, record_path: tuple[str, ...] | None, cache: NameCache) -> Iterator[Record]:
    root = etree.fromstring(data, xml_safety.parser())
    xml_safety.check_docinfo(root.getroottree())
    names = cache.for_root(root)
    steps = record_path or (CROSSREF_RECORDS if _is_crossref(root) else GENERIC_RECORDS)
    head = _crossref_head(root) if _is_crossref(root) else None
    context = _context(head, names) if head is not None else {}
    level = [root] if _matches(steps[0], root, names) else []
    for step in steps[1:]:
        level = [child for parent in level for child in parent if _matches(step, child, names)]
    for record in level:
        follows_head = head is not None and _after(record, head, root)
        yield Record(
            names.element(record, _tag(record)), context if follows_head else {}, flatten(record, names)
        )


def _after(record: Element, head: Element, root: Element) -> bool:
    """Whether ``record`` comes after ``head`` ends (both below the root)."""
    if record is root:
        return False
    top = record
    while (parent := top.getparent()) is not root and parent is not None:
        top = parent
    return root.index(top) > root.index(head)


def _stream(path: Path, record_path: tuple[str, ...] | None, cache: NameCache) -> Iterator[Record]:
    events = xml_safety.iterparse(path)
    names: Names | None = None
    steps: tuple[str, ...] = ()
    crossref = False
    context: dict[str, str] = {}  # Crossref head: known once head ends, for the records after it
    in_head = False  # head is kept whole until it ends
    on_path = [True]  # on_path[d]: the open element at depth d matches the first d steps
    depth = 0
    inside = False  # within a record: its descendants are kept until it ends
    for event, element in events:
        if event == "start":
            depth += 1
            if depth == 1:
                xml_safety.check_docinfo(element.getroottree())
                names = cache.for_root(element)
                crossref = _is_crossref(element)
                steps = record_path or (CROSSREF_RECORDS if crossref else GENERIC_RECORDS)
            elif depth == 2 and crossref and not context:
                in_head = _local(_tag(element)) == "head"
            if not inside:
                assert names is not None
                matched = on_path[-1] and depth <= len(steps) and _matches(steps[depth - 1], element, names)
                on_path.append(matched)
                inside = matched and depth == len(steps)
            continue
        if inside and depth > len(steps):
            depth -= 1
            continue
        assert names is not None
        if inside:
            yield Record(names.element(element, _tag(element)), context, flatten(element, names))
            inside = False
        if in_head and depth == 2:
            context, in_head = _context(element, names), False
        on_path.pop()
        if on_path[-1] and not in_head:
            _release(element)  # the top of a subtree that is done with: records, head, non-matching
        depth -= 1


def _release(element: Element) -> None:
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _context(head: Element, names: Names) -> dict[str, str]:
    prefix = names.element(head, _tag(head))
    return {
        f"{prefix}{'' if key[0] == '@' else '.'}{key}": value for key, value in flatten(head, names).items()
    }


def _crossref_head(root: Element) -> Element | None:
    return next((child for child in root if _local(_tag(child)) == "head"), None)


def _is_crossref(root: Element) -> bool:
    return _local(_tag(root)) == CROSSREF_ROOT


def _matches(step: str, element: Element, names: Names) -> bool:
    if step == "*":
        return True
    tag = _tag(element)
    return step == names.element(element, tag) or (":" not in step and step == _local(tag))


def _tag(element: Element) -> str:
    return cast(str, element.tag)  # comments and processing instructions are removed by the parser


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]
