"""One large document's records split between pool workers by byte position (DESIGN.md §9).

A pool converts a large document as ``count`` *ranges*. Each worker parses the document from its
start (the parser needs everything before a record to know where it is), but flattens only the
records that are taken up while the bytes it has read so far lie in ``(start, stop]``, and stops
reading after the last of them. Every worker reads the same fixed-size chunks and takes a record up
at the same point (``api.services.xml_stream``: once the next record has started or the container
has ended), so the ranges partition the records exactly and in order, however the document is laid
out (one line or many). Skipped records are only parsed in C and dropped, which costs about a
quarter to a third of converting them, so the boundaries are placed to give every range the same
work (``split``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Final

# Parsing a record (lxml) is about a third of converting it (parsing + flattening + spooling).
PARSE_SHARE: Final = 1 / 3


class Place(Enum):
    SKIP = "skip"  # before the range: parse and clear only
    TAKE = "take"
    STOP = "stop"  # past the range: stop reading


@dataclass(frozen=True, slots=True)
class ByteRange:
    index: int  # 0-based, of ``count``
    count: int
    start: int  # records reported after more than ``start`` bytes were read ...
    stop: int | None  # ... and at most ``stop`` (None: to the end of the document)

    @property
    def last(self) -> bool:
        return self.stop is None

    def place(self, position: int) -> Place:
        """Where a record reported with ``position`` bytes read belongs relative to this range."""
        if position <= self.start:
            return Place.SKIP
        if self.stop is not None and position > self.stop:
            return Place.STOP
        return Place.TAKE


def split(size: int, count: int, parse_share: float = PARSE_SHARE) -> list[ByteRange]:
    """``count`` ranges covering a document of ``size`` bytes, with equal work each.

    Range *k* ending at fraction ``x[k+1]`` costs ``parse_share * x[k+1]`` (parsing up to its end)
    plus ``(1 - parse_share) * (x[k+1] - x[k])`` (converting its records); equal costs make
    ``x[k+1] = c + (1 - parse_share) * x[k]``, with ``c`` chosen so that ``x[count] = 1``.
    """
    if count < 1:
        raise ValueError("a document is split into at least one range")
    keep = 1 - parse_share
    share = range_share(count, parse_share)
    bounds = [0]
    fraction = 0.0
    for _ in range(count - 1):
        fraction = share + keep * fraction
        bounds.append(int(size * fraction))
    return [
        ByteRange(index, count, bounds[index], bounds[index + 1] if index + 1 < count else None)
        for index in range(count)
    ]


def range_share(count: int, parse_share: float = PARSE_SHARE) -> float:
    """The work of each of the ``count`` ranges ``split`` makes, as a fraction of converting the
    document in one piece (``count`` times it is what splitting the document costs in all)."""
    keep = 1 - parse_share
    return 1 / sum(keep**k for k in range(count))


class CountingReader:
    """A binary file that counts the bytes read from it (the parser's position)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.position += len(data)
        return data


class RecordWindow:
    """The records of one range, as a stream meets them (``skipped`` counts those before it)."""

    def __init__(self, byte_range: ByteRange, reader: CountingReader) -> None:
        self.range = byte_range
        self.reader = reader
        self.skipped = 0
        self.learn = True  # whether skipped records must be read for late-declared namespaces

    def place(self) -> Place:
        """Where the record the parser just reported belongs (counting it when skipped)."""
        place = self.range.place(self.reader.position)
        if place is Place.SKIP:
            self.skipped += 1
        return place
