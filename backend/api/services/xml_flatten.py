"""Flattening one record element into columns (the rules of docs/conversion.md, issue 8).

- The record's own attributes are ``@name``; every descendant element is the ``.``-joined path of
  names relative to the record (``contributors.person_name.surname``), its attributes ``path@name``.
- Names are as ``api.services.xml_names`` gives them (``jats:abstract.jats:p``, ``@xml:lang``).
- Siblings with the same name are numbered in document order (``person_name[1]``,
  ``person_name[2]``); a name that occurs once has no index.
- A value is the element's text with XML whitespace collapsed and trimmed. An element with mixed
  content (text beside child elements) holds its full text in document order, and its children still
  get their own columns. Empty values make no column; when two paths come out the same (an element
  named ``a.b`` beside ``a``/``b``), the later value wins. Text of the record element itself (a record
  without child elements, or with mixed content) is the column ``#text``.

Speed matters (the target is 12 MB/s on one core, and the parse alone runs at 22-40 MB/s), so
``flatten`` does as much as it can in C: lxml's ``getelementpath`` already numbers repeated siblings
exactly as the rule above says, and its paths are turned into column paths through a cache. Records
that are very large (where ``getelementpath``'s sibling scans grow quadratic) or use namespaces the
cache cannot name are numbered in Python instead, with the same result. Records of one corpus
mostly share a few shapes, so the paths are also cached by shape: the descendants' tags and child
counts in document order describe the tree exactly (a pre-order walk with each node's number of
children can be rebuilt into one tree only), hence their paths; both are read in C.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter
from typing import Final, cast

from lxml import etree

from api.services.xml_names import SHAPE_MAX_ELEMENTS, Element, Names

TEXT_COLUMN: Final = "#text"
FAST_PATH_MAX_ELEMENTS: Final = 2000
_XML_SPACE = re.compile(r"[ \t\r\n]+")
_TAG = attrgetter("tag")
_TEXT = attrgetter("text")
_TAIL = attrgetter("tail")
_ATTRIB = attrgetter("attrib")


def collapse(text: str) -> str:
    """``text`` with runs of XML whitespace (space, tab, CR, LF) made one space, and trimmed."""
    if _tidy(text):
        return text
    if text.isascii():  # str.split() splits on more than XML whitespace, but not within ASCII
        return " ".join(text.split())
    return _XML_SPACE.sub(" ", text).strip(" ")


def _tidy(text: str) -> bool:
    """Whether ``text`` certainly needs no collapsing: three C-level checks, no copy (tab, CR and LF
    are not printable; ``strip`` returns the very same object when there is nothing to strip)."""
    return "  " not in text and text.isprintable() and text.strip() is text


def flatten(record: Element, names: Names) -> dict[str, str]:
    """The columns of ``record`` (without the fixed ``source_file``/``record_index``/``record_type``)."""
    row: dict[str, str] = {}
    if record.attrib:
        _attributes(row, "", record, record.attrib, names)
    elements = list(record.iterdescendants())
    if not elements:
        if record.text and not record.text.isspace():
            row[TEXT_COLUMN] = collapse(record.text)
        return row
    mixed = _mixed_by_tail(elements)
    if (record.text and not record.text.isspace()) or record in mixed:
        row[TEXT_COLUMN] = collapse("".join(record.itertext()))
    attribute_names = names.attributes.get
    child_counts = tuple(map(len, elements))
    for element, path, text, attrib, children in zip(
        elements,
        _paths(record, elements, child_counts, names),
        map(_TEXT, elements),
        map(_ATTRIB, elements),
        child_counts,
        strict=True,
    ):
        if attrib:  # _attributes(), inlined
            for key, raw in attrib.items():
                value = raw if "  " not in raw and raw.isprintable() and raw.strip() is raw else collapse(raw)
                if value:
                    row[f"{path}@{attribute_names(key) or names.attribute(element, key)}"] = value
        if text and not text.isspace():
            if children:
                text = "".join(element.itertext())
            # The check of collapse(), inlined: this line runs for nearly every element.
            row[path] = (
                text if "  " not in text and text.isprintable() and text.strip() is text else collapse(text)
            )
        elif mixed and element in mixed:
            row[path] = collapse("".join(element.itertext()))
    return row


def numbered(parents: list[Element | None], steps: list[str]) -> list[str]:
    """``steps`` with ``[n]`` added to every name that occurs more than once under the same parent."""
    keys = list(zip(parents, steps, strict=True))
    totals = Counter(keys)
    if len(totals) == len(keys):
        return steps
    seen: dict[tuple[Element | None, str], int] = {}
    result = []
    for key, step in zip(keys, steps, strict=True):
        if totals[key] > 1:
            seen[key] = count = seen.get(key, 0) + 1
            step = f"{step}[{count}]"
        result.append(step)
    return result


def _paths(
    record: Element, elements: list[Element], child_counts: tuple[int, ...], names: Names
) -> Sequence[str]:
    """The column path of every element of ``elements`` (the record's descendants, in order, with
    their numbers of children)."""
    if len(elements) > FAST_PATH_MAX_ELEMENTS:
        return linear_paths(record, elements, names)
    shape = (tuple(map(_TAG, elements)), child_counts) if len(elements) <= SHAPE_MAX_ELEMENTS else None
    known = names.shapes.get(shape) if shape is not None else None
    if known is not None:
        return known
    element_paths = list(map(etree.ElementTree(record).getelementpath, elements))
    paths = list(map(names.paths.get, element_paths))
    for index, (path, element_path) in enumerate(zip(paths, element_paths, strict=True)):
        if path is None and (path := names.path(element_path)) is None:
            # A namespace declared below the root: named for this document only, never cached.
            return linear_paths(record, elements, names)
        paths[index] = path
    named = tuple(cast(list[str], paths))
    if shape is not None:
        names.remember_shape(shape, named)
    return named


def linear_paths(record: Element, elements: list[Element], names: Names) -> list[str]:
    """The same paths as ``_paths``, in time linear in the number of elements."""
    parents = [element.getparent() for element in elements]
    steps = [names.element(element, element.tag) for element in elements]  # type: ignore[arg-type]
    bases: dict[Element | None, str] = {record: ""}
    paths = []
    for element, parent, step in zip(elements, parents, numbered(parents, steps), strict=True):
        path = bases[parent] + step
        bases[element] = path + "."
        paths.append(path)
    return paths


def _mixed_by_tail(elements: list[Element]) -> set[Element | None]:
    """The elements (the record included) that hold text between their children."""
    tails = list(map(_TAIL, elements))
    joined = "".join(filter(None, tails))
    if not joined or joined.isspace():
        return set()  # the common case, decided in C
    return {
        element.getparent()
        for element, tail in zip(elements, tails, strict=True)
        if tail and not tail.isspace()
    }


def _attributes(
    row: dict[str, str], path: str, element: Element, attrib: etree._Attrib, names: Names
) -> None:
    known = names.attributes
    for key, raw in attrib.items():
        value = collapse(raw)
        if value:
            row[f"{path}@{known.get(key) or names.attribute(element, key)}"] = value
