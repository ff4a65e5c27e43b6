"""The scan: every upload of a session, ZIPs (nested ones too) extracted safely, every file listed.

Each archive is extracted into its own directory under ``extracted/``, named from a hash of its
archive chain (two nested ``data.zip`` in different places never merge), and its nested archives are
opened only once it is complete. Source paths are archive chains:
``deposits.zip!/2024/batch.zip!/book_1.xml``.

Limits (``ScanLimits``) are enforced while extracting, on bytes actually written: depth, entries,
total bytes, bytes per entry, compression ratio per entry. A breach raises ``LimitExceededError``;
the caller fails the job and removes ``extracted/``. Unsafe names and links are refused and listed;
a damaged archive is listed as failed (with whatever it had extracted removed) and the scan goes on.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from api.services import filenames
from api.services.zip_safety import (
    CopyLimits,
    LimitExceededError,
    MemberPaths,
    UnsafeMemberError,
    copy_member,
    count_entries,
    file_sha256,
    is_link,
)

FileKind = Literal["xml", "zip", "other"]
FileStatus = Literal["pending", "converted", "skipped", "failed", "extracted"]
CHAIN_SEPARATOR: Final = "!/"
PART_PREFIX: Final = "."  # hidden files in input/ are uploads still being written


@dataclass(frozen=True, slots=True)
class ScanLimits:
    max_depth: int
    max_files: int
    max_total_bytes: int
    max_file_bytes: int
    max_ratio: float


@dataclass(slots=True)
class SourceFile:
    """One file the scan saw, as the manifest lists it."""

    source: str
    kind: FileKind
    size: int
    sha256: str | None = None
    status: FileStatus = "pending"
    reason: str | None = None
    records: int = 0
    path: Path | None = None  # on disk, for XML files to convert


@dataclass(slots=True)
class _Budget:
    limits: ScanLimits
    files: int = 0
    bytes: int = 0

    def count_files(self, count: int) -> None:
        self.files += count
        if self.files > self.limits.max_files:
            raise LimitExceededError("MAX_TOTAL_FILES", self.limits.max_files, "too many files in the upload")

    def charge(self, size: int) -> None:
        self.bytes += size
        if self.bytes > self.limits.max_total_bytes:
            raise LimitExceededError(
                "MAX_TOTAL_BYTES", self.limits.max_total_bytes, "the upload extracts to too many bytes"
            )


@dataclass(slots=True)
class _Archive:
    path: Path
    entry: SourceFile  # how the archive itself is listed
    depth: int
    found: list[SourceFile] = field(default_factory=list)

    @property
    def chain(self) -> str:
        return self.entry.source


def scan(
    input_dir: Path,
    extracted_dir: Path,
    limits: ScanLimits,
    progress: Callable[[str], None],
    upload_done: Callable[[list[SourceFile]], None] | None = None,
) -> list[SourceFile]:
    """List (and extract) everything under ``input_dir``, in ``source_order``.

    Uploads are taken in name order, each finished with everything nested in it before the next;
    ``upload_done(files)`` then gets that upload's files (so conversion can start while the scan
    goes on). ``progress(message)`` is called before each archive; both may raise to cancel.

    Raises:
        LimitExceededError: a limit was reached; ``extracted_dir`` may hold partial output.
    """
    budget = _Budget(limits)
    found: list[SourceFile] = []
    for path in sorted(input_dir.iterdir(), key=lambda path: path.name):
        if path.name.startswith(PART_PREFIX) or path.is_symlink() or not path.is_file():
            continue
        files = sorted(_upload(path, extracted_dir, budget, progress), key=source_order)
        if upload_done is not None:
            upload_done(files)
        found += files
    return found


def source_order(source: SourceFile) -> list[str]:
    """Sort key: source paths compared archive by archive (``a.zip!/x`` before ``a.zip (2).zip``),
    so each upload's files stay together and sorted uploads give sorted files."""
    return source.source.split(CHAIN_SEPARATOR)


def _upload(
    path: Path, extracted_dir: Path, budget: _Budget, progress: Callable[[str], None]
) -> list[SourceFile]:
    budget.count_files(1)
    source = _classify(path.name, path.stat().st_size)
    source.path = path
    files = [source]
    if source.kind == "zip":
        source.sha256 = file_sha256(path)
        pending = [_Archive(path, source, 1)]
        while pending:
            archive = pending.pop(0)
            progress(f"extracting {archive.chain}")
            files += _extract(archive, extracted_dir, budget, pending)
    return files


def _extract(
    archive: _Archive, extracted_dir: Path, budget: _Budget, pending: list[_Archive]
) -> list[SourceFile]:
    """Extract one archive; queue its nested archives; return the files it held."""
    if archive.depth > budget.limits.max_depth:
        raise LimitExceededError(
            "MAX_NESTED_ZIP_DEPTH", budget.limits.max_depth, f"{archive.chain} is nested too deeply"
        )
    directory = _new_directory(extracted_dir, archive.chain)
    paths = MemberPaths(directory)
    nested: list[_Archive] = []
    try:
        with archive.path.open("rb") as handle:
            budget.count_files(count_entries(handle, budget.limits.max_files))
        with zipfile.ZipFile(archive.path) as opened:
            for info in opened.infolist():
                if not info.is_dir():
                    archive.found.append(_member(opened, info, archive, paths, budget, nested))
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        # Damaged: nothing of it is kept (its nested archives were not opened yet).
        shutil.rmtree(directory, ignore_errors=True)
        archive.entry.status, archive.entry.reason = "failed", f"damaged archive: {exc}"
        return []
    archive.entry.status = "extracted"
    pending.extend(nested)
    return archive.found


def _member(
    opened: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    archive: _Archive,
    paths: MemberPaths,
    budget: _Budget,
    nested: list[_Archive],
) -> SourceFile:
    source = _classify(info.filename, info.file_size, archive.chain)
    if is_link(info):
        return _refused(source, "refused: a symbolic link")
    target: Path | None
    try:
        target = paths.path(info.filename)
    except UnsafeMemberError as exc:
        return _refused(source, str(exc))
    if info.flag_bits & 0x1:
        return _refused(source, "skipped: the entry is encrypted")
    if source.kind == "other":
        target = None  # not extracted, but still read (hashed, and held to the limits)
        source.status, source.reason = "skipped", f"not an XML or ZIP file ({_suffix(info.filename)})"
    try:
        target = _copy(opened, info, source, paths, budget, target)
    except NotImplementedError as exc:  # an unsupported compression method
        return _refused(source, f"unsupported entry: {exc}")
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        return _refused(source, "refused: the entry's path clashes with another entry")
    source.path = target
    if source.kind == "zip" and target is not None:
        nested.append(_Archive(target, source, archive.depth + 1))
    return source


def _copy(
    opened: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    source: SourceFile,
    paths: MemberPaths,
    budget: _Budget,
    target: Path | None,
) -> Path | None:
    """Decompress a member into ``target`` (or nowhere), filling in its real size and SHA-256."""
    limits = CopyLimits(budget.limits.max_file_bytes, budget.limits.max_ratio)
    with opened.open(info) as reader:
        if target is None:
            source.size, source.sha256 = copy_member(reader, None, info.compress_size, limits, budget.charge)
            return None
        target, handle = paths.create(target)
        with handle as writer:
            source.size, source.sha256 = copy_member(
                reader, writer, info.compress_size, limits, budget.charge
            )
    return target


def _classify(name: str, size: int, chain: str | None = None) -> SourceFile:
    source = name if chain is None else f"{chain}{CHAIN_SEPARATOR}{name}"
    suffix = _suffix(name)
    kind: FileKind = "xml" if suffix == ".xml" else "zip" if suffix == ".zip" else "other"
    return SourceFile(source, kind, size)


def _refused(source: SourceFile, reason: str) -> SourceFile:
    source.status, source.reason = "failed", reason
    return source


def _new_directory(extracted_dir: Path, chain: str) -> Path:
    """A fresh directory for one archive, named after a hash of its chain (a duplicate entry name
    in the same archive makes the same chain twice: it gets a numbered name)."""
    try:
        name = filenames.safe_filename(chain.rsplit(CHAIN_SEPARATOR, 1)[-1])
    except filenames.UnsafeFilenameError:
        name = "archive.zip"
    digest = hashlib.sha256(chain.encode()).hexdigest()[:16]
    paths = MemberPaths(extracted_dir)
    for attempt in range(1, 1000):
        directory = paths.path(f"{digest}-{attempt}-{name}" if attempt > 1 else f"{digest}-{name}")
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        return directory
    raise LimitExceededError("MAX_TOTAL_FILES", 1000, f"{chain} appears too many times")


def _suffix(name: str) -> str:
    """The lower-cased suffix of the name's last component, as ``PurePosixPath.suffix`` gives it
    (``a/b.XML`` -> ``.xml``; ``.hidden``, ``name.`` and ``dir/`` -> none), in a third of its time."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    base = parts[-1] if parts else ""
    dot = base.rfind(".")
    return base[dot:].lower() if 0 < dot < len(base) - 1 else ""
