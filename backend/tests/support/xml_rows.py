"""Flattening XML text in tests: the records (type, context, values) of a small document."""

from __future__ import annotations

from pathlib import Path

from api.services.xml_names import NameCache
from api.services.xml_records import read_records
from api.services.xml_selection import Record


def records(
    tmp_path: Path, xml: str | bytes, record_path: tuple[str, ...] | None = None, *, stream: bool = False
) -> list[Record]:
    """The records of ``xml``, parsed whole or (``stream``) incrementally."""
    path = tmp_path / "document.xml"
    data = xml.encode() if isinstance(xml, str) else xml
    path.write_bytes(data)
    return list(read_records(path, len(data), record_path, NameCache(), 0 if stream else len(data) + 1))


def values(tmp_path: Path, xml: str, record_path: tuple[str, ...] | None = None) -> list[dict[str, str]]:
    """Only the record columns, one dict per record."""
    return [record.values for record in records(tmp_path, xml, record_path)]


def only(tmp_path: Path, xml: str) -> dict[str, str]:
    """The columns of the single record of ``xml``."""
    (record,) = values(tmp_path, xml)
    return record
