"""Which elements of a document are records, and the context copied onto their rows.

- A Crossref deposit (root ``doi_batch``, any namespace): every element child of ``body`` is a record,
  and ``head`` is context, copied onto the rows of the records after it as ``head.*`` columns.
- Any other document: every element child of the root is a record.
- A request may name the records instead, with a path of element names from the root
  (``/doi_batch/body/*``, parsed by ``api.services.record_path``). A step matches an element by
  the name columns use (``jats:article``), by its local name when the step has no prefix, or
  always when it is ``*``. Crossref context still applies to records outside ``head``.

``xml_records`` applies these rules to a parsed document, ``xml_stream`` while parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from api.services.xml_flatten import flatten
from api.services.xml_names import Element, Names

CROSSREF_ROOT: Final = "doi_batch"
CROSSREF_RECORDS: Final = ("*", "body", "*")
GENERIC_RECORDS: Final = ("*", "*")


@dataclass(frozen=True, slots=True)
class Record:
    record_type: str
    context: dict[str, str]  # the same object for every record of a document
    values: dict[str, str]


def record_steps(root: Element, record_path: tuple[str, ...] | None) -> tuple[str, ...]:
    """The path of the records: the request's, else the rule for this kind of document."""
    return record_path or (CROSSREF_RECORDS if is_crossref(root) else GENERIC_RECORDS)


def context(head: Element, names: Names) -> dict[str, str]:
    """The columns ``head`` contributes to the rows after it (``head.x``, ``head@y``)."""
    prefix = names.element(head, tag(head))
    return {
        f"{prefix}{'' if key[0] == '@' else '.'}{key}": value for key, value in flatten(head, names).items()
    }


def crossref_head(root: Element) -> Element | None:
    return next((child for child in root if local(tag(child)) == "head"), None)


def is_crossref(root: Element) -> bool:
    return local(tag(root)) == CROSSREF_ROOT


def matches(step: str, element: Element, names: Names) -> bool:
    if step == "*":
        return True
    name = tag(element)
    return step == names.element(element, name) or (":" not in step and step == local(name))


def tag(element: Element) -> str:
    return cast(str, element.tag)  # comments and processing instructions are removed by the parser


def local(name: str) -> str:
    return name.rpartition("}")[2]
