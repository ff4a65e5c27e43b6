"""Documents with a DOCTYPE are refused before parsing; nothing is ever read or fetched for them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from api.services import xml_safety
from api.services.xml_safety import RefusedDocumentError, check_docinfo, check_prolog
from tests.support.hostile_xml import BILLION_LAUGHS, RecordingServer, recording_server
from tests.support.xml_rows import records


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with recording_server() as recorder:
        yield recorder


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(RefusedDocumentError, match="DOCTYPE"):
        records(tmp_path, BILLION_LAUGHS)
    assert time.monotonic() - started < 1


def test_an_external_file_entity_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    xml = f'<!DOCTYPE r [<!ENTITY s SYSTEM "file://{secret}">]><r><book><t>&s;</t></book></r>'
    with pytest.raises(RefusedDocumentError):
        records(tmp_path, xml)


@pytest.mark.parametrize("stream", [False, True])
def test_external_entities_and_dtds_are_never_fetched(
    tmp_path: Path, server: RecordingServer, stream: bool
) -> None:
    documents = [
        f'<!DOCTYPE r [<!ENTITY s SYSTEM "{server.url}/entity">]><r><b><t>&s;</t></b></r>',
        f'<!DOCTYPE r SYSTEM "{server.url}/dtd"><r><b><t>x</t></b></r>',
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{server.url}/parameter"> %p;]><r><b/></r>',
    ]
    for xml in documents:
        with pytest.raises(RefusedDocumentError):
            records(tmp_path, xml, stream=stream)
    assert server.requests == []


def test_the_parser_itself_reads_and_fetches_nothing(tmp_path: Path, server: RecordingServer) -> None:
    # The second line of defence, without the DOCTYPE refusal in front of it.
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    documents = [
        f'<!DOCTYPE r [<!ENTITY s SYSTEM "file://{secret}">]><r>&s;</r>',
        f'<!DOCTYPE r [<!ENTITY s SYSTEM "{server.url}/entity">]><r>&s;</r>',
        f'<!DOCTYPE r SYSTEM "{server.url}/dtd"><r>x</r>',
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{server.url}/parameter"> %p;]><r/>',
    ]
    for xml in documents:
        try:
            root = etree.fromstring(xml.encode(), xml_safety.parser())
        except etree.XMLSyntaxError:
            continue
        assert "TOP-SECRET" not in etree.tostring(root, encoding="unicode")
    assert server.requests == []


def test_a_doctype_after_comments_and_processing_instructions_is_found() -> None:
    head = b'<?xml version="1.0"?>\n<!-- c --> <?pi x?>\n<!DOCTYPE r><r/>'
    with pytest.raises(RefusedDocumentError):
        check_prolog(head, complete=True)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_doctype_is_found_in_wide_encodings(encoding: str) -> None:
    head = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><r/>'.encode(encoding)
    with pytest.raises(RefusedDocumentError):
        check_prolog(head, complete=True)


def test_a_document_without_doctype_passes() -> None:
    check_prolog(
        b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- no doctype --><r><!DOCTYPE-looking/></r>', complete=True
    )


def test_a_prolog_longer_than_the_limit_is_refused() -> None:
    head = b"<!--" + b"x" * xml_safety.PROLOG_LIMIT + b"-->"
    with pytest.raises(RefusedDocumentError, match="prolog"):
        check_prolog(head, complete=False)


def test_a_parsed_doctype_is_refused_as_a_second_line() -> None:
    tree = etree.fromstring(b"<!DOCTYPE r><r/>", xml_safety.parser()).getroottree()
    with pytest.raises(RefusedDocumentError):
        check_docinfo(tree)


@pytest.mark.parametrize(
    ("head", "ascii"),
    [
        (b"<root/>", True),
        (b'<?xml version="1.0"?><root/>', True),
        (b'\xef\xbb\xbf<?xml version="1.0" encoding="ISO-8859-1"?><root/>', True),
        ('<?xml version="1.0" encoding="UTF-16"?><root/>'.encode("utf-16"), False),
        ('<?xml version="1.0"?><root/>'.encode("utf-32-le"), False),
        (b'<?xml version="1.0" encoding="UTF-16"?>', False),  # declared so, whatever the bytes say
        (b'<?xml version="1.0" encoding="no-such-codec"?>', False),
        (b"\x4c\x6f\xa7\x94\x93", False),  # EBCDIC
    ],
)
def test_only_documents_that_write_xmlns_as_ascii_are_searched_for_it(head: bytes, ascii: bool) -> None:
    assert xml_safety.writes_ascii_markup(head) is ascii
