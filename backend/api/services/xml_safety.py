"""Safe XML parsing: the parser options, and the refusal of any document that declares a DOCTYPE.

A DOCTYPE is how every XML attack gets in (billion laughs, external entities that read local files or
fetch URLs, external DTDs), and no metadata deposit needs one. So a document is refused *before*
libxml2 sees it when its prolog (what comes before the root element) holds a ``<!DOCTYPE``; the check
reads the first ``PROLOG_LIMIT`` bytes only and understands UTF-8/ASCII-compatible encodings, UTF-16
and UTF-32 (with or without a byte-order mark). As a second line, every parser here has DTD loading,
entity resolution and network access off, and the parsed document's ``docinfo`` is checked again.
"""

from __future__ import annotations

import codecs
import re
import threading
from typing import BinaryIO, Final, Literal, TypedDict

from lxml import etree

PROLOG_LIMIT: Final = 64 * 1024
XML_WHITESPACE: Final = " \t\r\n"
# Byte-order marks and the unmarked UTF-16/32 forms of "<?" (XML 1.0, appendix F), most specific first.
ENCODING_SIGNATURES: Final = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
_per_thread = threading.local()


class RefusedDocumentError(Exception):
    """The document declares a DOCTYPE (or hides its prolog): it is not parsed at all."""


def parser() -> etree.XMLParser:
    """This thread's parser, with DTDs, entities and the network off (making one per document
    costs as much as parsing a small deposit, and a parser serves one document at a time)."""
    cached: etree.XMLParser | None = getattr(_per_thread, "parser", None)
    if cached is None:
        cached = _per_thread.parser = _new_parser()
    return cached


# The one set of parser options for whole documents and incremental parsing alike, so the two
# can never drift apart: no entities, no network, no DTD, no huge trees; comments and PIs dropped.
class _SafeOptions(TypedDict):
    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_comments: bool
    remove_pis: bool


SAFE_OPTIONS: Final[_SafeOptions] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(**SAFE_OPTIONS)


def iterparse(
    source: BinaryIO, events: tuple[Literal["start", "end"], ...]
) -> etree.iterparse[tuple[str, etree._Element]]:
    """Incremental parsing of ``source`` with the same options, reporting ``events``."""
    return etree.iterparse(source, events=events, **SAFE_OPTIONS)


def pull_parser(
    events: tuple[Literal["start", "end"], ...], tags: list[str] | None = None
) -> etree.XMLPullParser:
    """A feed parser with the same options, reporting ``events`` for elements named in ``tags``
    only (all when None): the others are parsed in C without a Python object each."""
    return etree.XMLPullParser(events=events, tag=tags, **SAFE_OPTIONS)


def check_prolog(head: bytes, *, complete: bool) -> None:
    """Refuse a document whose prolog declares a DOCTYPE.

    ``head`` is the start of the document (at most ``PROLOG_LIMIT`` bytes are looked at);
    ``complete`` says whether it is the whole document.

    Raises:
        RefusedDocumentError: a ``<!DOCTYPE`` (or any other ``<!`` declaration) comes before the root
            element, or the prolog runs past ``PROLOG_LIMIT`` bytes of a longer document.
    """
    text = _decode(head[:PROLOG_LIMIT])
    position = 0
    while True:
        position = _skip_space(text, position)
        if text.startswith("<?", position):
            end = text.find("?>", position + 2)
            position = -1 if end < 0 else end + 2
        elif text.startswith("<!--", position):
            end = text.find("-->", position + 4)
            position = -1 if end < 0 else end + 3
        elif text.startswith("<!", position):
            raise RefusedDocumentError("refused: the document declares a DOCTYPE (DTDs and entities are off)")
        else:
            return  # the root element, or something the parser will report as malformed
        if position < 0:
            if complete and len(head) <= PROLOG_LIMIT:
                return  # an unterminated prolog: malformed, the parser says so
            raise RefusedDocumentError(f"refused: the prolog is longer than {PROLOG_LIMIT} bytes")


def check_docinfo(tree: etree._ElementTree) -> None:
    """The second line: refuse a parsed document that still carries a DOCTYPE."""
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise RefusedDocumentError("refused: the document declares a DOCTYPE (DTDs and entities are off)")


_DECLARED_ENCODING = re.compile(
    rb"""^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']"""
)
_EBCDIC_SIGNATURE: Final = b"\x4c\x6f\xa7\x94"  # "<?xm" in EBCDIC (XML 1.0, appendix F)


def writes_ascii_markup(head: bytes) -> bool:
    """Whether the document starting with ``head`` writes its markup (names, ``xmlns``) as ASCII
    bytes, so that it can be searched for them: not UTF-16/32 or EBCDIC, nor any declared
    encoding that would write ``xmlns`` otherwise."""
    if head.startswith(_EBCDIC_SIGNATURE) or any(head.startswith(sig) for sig, _ in ENCODING_SIGNATURES):
        return False
    declared = _DECLARED_ENCODING.match(head)
    if declared is None:
        return True  # UTF-8
    try:
        return "xmlns".encode(declared.group(1).decode("ascii")) == b"xmlns"
    except (LookupError, UnicodeError):
        return False


def _decode(head: bytes) -> str:
    for signature, encoding in ENCODING_SIGNATURES:
        if head.startswith(signature):
            usable = len(head) - len(head) % (4 if "32" in encoding else 2)
            return head[:usable].decode(encoding, errors="replace").lstrip("\ufeff")
    # Every other encoding libxml2 reads here is ASCII-compatible in the prolog's markup.
    return head.decode("latin-1").removeprefix("\xef\xbb\xbf")


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in XML_WHITESPACE:
        position += 1
    return position
