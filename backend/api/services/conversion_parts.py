"""Converting one *part* (a contiguous run of the sorted XML files) into spooled tables.

This is what a pool worker runs, so its input and output are plain picklable data, and it keeps one
``NameCache`` per process. A file that fails (refused DOCTYPE, malformed XML, unreadable) is listed
with its reason, its rows are rolled back, and the part goes on.
"""

from __future__ import annotations

import hashlib
import re
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from lxml import etree

from api.services.table_spool import ColumnSeed, PartWriter, SpooledTable
from api.services.xml_names import NameCache
from api.services.xml_records import (
    WHOLE_DOCUMENT_BYTES,
    document_records,
    read_document,
    read_record_range,
    read_records,
)
from api.services.xml_safety import RefusedDocumentError
from api.services.xml_selection import Record
from api.services.xml_window import ByteRange

HASH_CHUNK: Final = 1024 * 1024
STATUS_FILE: Final = Path("/proc/self/status")
_VM_HWM = re.compile(r"^VmHWM:\s+(\d+) kB", re.MULTILINE)
_names = NameCache()  # one per process: column names are cached across the documents it reads


@dataclass(frozen=True, slots=True)
class PartFile:
    number: int  # the file's position in the sorted list of XML files
    source: str
    path: Path
    size: int
    sha256: str | None  # known when the scan extracted it; computed here otherwise


@dataclass(frozen=True, slots=True)
class PartTask:
    part: int
    files: list[PartFile]
    record_path: tuple[str, ...] | None
    spool_dir: Path
    whole_document_bytes: int = WHOLE_DOCUMENT_BYTES
    byte_range: ByteRange | None = None  # this part is one range of its only file's records
    # The columns of the parts converted before it (``table_merge.ColumnSeeds``), set as it starts.
    seed: ColumnSeed = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileOutcome:
    number: int
    status: Literal["converted", "failed"]
    records: int
    # Computed here; None when the scan knew it (not sent back: 64 characters a file made a part's
    # result outgrow a pipe's 64 KiB, and a worker then waited for the parent to read it).
    sha256: str | None
    reason: str | None = None
    # One range of a split file, not the last: its records count, but the last range (which reads
    # the whole document) decides the file's status and gives its SHA-256.
    partial: bool = False

    def __reduce__(self) -> tuple[type[FileOutcome], tuple[object, ...]]:
        # One per file comes back from the pool's pipes: pickled as plain fields, at a third of
        # the cost of a slots dataclass's default (which walks dataclasses.fields() per object).
        return (FileOutcome, (self.number, self.status, self.records, self.sha256, self.reason, self.partial))


@dataclass(slots=True)
class PartResult:
    part: int
    outcomes: list[FileOutcome] = field(default_factory=list)
    tables: list[SpooledTable] = field(default_factory=list)
    peak_rss_bytes: int = 0
    cpu_seconds: float = 0.0  # CPU time of the process that converted the part, while it did


def convert_part(task: PartTask, file_done: Callable[[], None] | None = None) -> PartResult:
    """Spool every record of ``task.files``; ``file_done()`` after each file (it may raise to stop)."""
    cpu_started = time.process_time()
    writer = PartWriter(task.spool_dir, task.part, task.seed)
    result = PartResult(task.part)
    try:
        for part_file in task.files:
            writer.begin_file()
            outcome = _convert_file(part_file, task, writer)
            if outcome.status == "failed":
                writer.discard_file()
            result.outcomes.append(outcome)
            if file_done is not None:
                file_done()
    except BaseException:
        writer.abort()
        raise
    result.tables = writer.close()
    result.peak_rss_bytes = peak_rss_bytes()
    result.cpu_seconds = time.process_time() - cpu_started
    return result


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    ``/proc/self/status`` first: ``getrusage`` keeps a peak inherited across fork and exec.
    """
    try:
        match = _VM_HWM.search(STATUS_FILE.read_text())
    except OSError:
        match = None
    if match is not None:
        return int(match.group(1)) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes


def _convert_file(part_file: PartFile, task: PartTask, writer: PartWriter) -> FileOutcome:
    number, sha256 = part_file.number, None
    partial = task.byte_range is not None and not task.byte_range.last
    records = 0
    try:
        if task.byte_range is None and part_file.size <= task.whole_document_bytes:
            # Read once, then hashed (when the scan did not) and parsed from memory.
            data = read_document(part_file.path, part_file.size)
            if part_file.sha256 is None:
                sha256 = hashlib.sha256(data).hexdigest()
            indexed: Iterator[tuple[int, Record]] = enumerate(
                document_records(data, task.record_path, _names), start=1
            )
        else:
            if part_file.sha256 is None and not partial:
                sha256 = _sha256(part_file.path)
            indexed = _streamed(part_file, task)
        for index, record in indexed:
            writer.add(number, index, record)
            records += 1
    except RefusedDocumentError as exc:
        return FileOutcome(number, "failed", 0, sha256, str(exc), partial)
    except etree.XMLSyntaxError as exc:
        return FileOutcome(number, "failed", 0, sha256, f"malformed XML: {exc}", partial)
    except (etree.LxmlError, LookupError, UnicodeError, OSError) as exc:
        return FileOutcome(number, "failed", 0, sha256, f"unreadable XML: {exc}", partial)
    return FileOutcome(number, "converted", records, sha256, None, partial)


def _streamed(part_file: PartFile, task: PartTask) -> Iterator[tuple[int, Record]]:
    """(record index, record) of a document parsed incrementally, or of the task's range of it."""
    if task.byte_range is not None:
        return read_record_range(part_file.path, task.record_path, _names, task.byte_range)
    records = read_records(
        part_file.path, part_file.size, task.record_path, _names, task.whole_document_bytes
    )
    return enumerate(records, start=1)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
