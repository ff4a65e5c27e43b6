"""Workspace sessions: creation, uploads, listing, downloads and cleanup that leaves nothing behind.

Files live under ``RET_RUNTIME_ROOT/sessions/{id}/{input,extracted,output,index}``. This module is
the only one that builds filesystem paths (``StorageService.path``), always from a server-made
session id and a sanitised name, and checks that every path stays inside the session directory.
Metadata lives in the session store (``api.services.workspace_records``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import mimetypes
import os
import re
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from api.core.cache_contract import CacheBackend
from api.errors import AppError, ConflictError, NotFoundError
from api.services import filenames
from api.services.upload_stream import MalformedUploadError, UnsupportedUploadTypeError, receive_files
from api.services.workspace_records import FileKind, StoredFile, WorkspaceRecords, WorkspaceSession

logger = logging.getLogger(__name__)

Area = Literal["input", "extracted", "output", "index"]
AREAS: tuple[Area, ...] = ("input", "extracted", "output", "index")
UPLOAD_SUFFIXES = (".zip", ".xml")
SESSION_ID = re.compile(r"[0-9a-f]{32}")
HASH_CHUNK = 1024 * 1024
PART_PREFIX = ".upload-"
ACTIVITY_WRITE_INTERVAL_SECONDS = 30.0
CONTENT_TYPES = {
    ".zip": "application/zip",
    ".xml": "application/xml",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class UploadTooLargeError(AppError):
    status_code = 413
    code = "upload_too_large"


class QuotaExceededError(AppError):
    status_code = 413
    code = "quota_exceeded"


class SessionLimitError(ConflictError):
    code = "session_limit_reached"


SessionCleanup = Callable[[str], int]
"""A cleanup step owned by another part (job cancellation, search index); returns a count."""
# Upload bytes are charged against the hourly budget every block while they arrive.
UPLOAD_CHARGE_BLOCK = 8 * 1024 * 1024


class UploadBudget(Protocol):
    def charge(self, user_id: int, size: int) -> None:
        """Take ``size`` bytes from the user's budget; raise (429) when it is spent."""

    def refund(self, user_id: int, size: int) -> None:
        """Give back bytes that were charged but not stored."""


@dataclass(slots=True)
class CleanupReport:
    session_id: str
    steps: dict[str, int] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)


@dataclass(slots=True)
class StorageLimits:
    max_upload_bytes: int
    user_quota_bytes: int
    max_sessions_per_user: int
    orphan_grace_seconds: float


class StorageService:
    def __init__(
        self,
        cache: CacheBackend,
        runtime_root: Path,
        idle_ttl_seconds: float,
        limits: StorageLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = WorkspaceRecords(cache, idle_ttl_seconds)
        self.root = (runtime_root / "sessions").resolve()
        self.limits = limits
        self._clock = clock
        # Steps other parts plug in, run in order before the cache keys and files are removed.
        self.cleanup_steps: list[tuple[str, SessionCleanup]] = []
        self.upload_budget: UploadBudget | None = None

    # -- paths: the only place they are built ------------------------------------------------

    def path(self, session_id: str, area: Area | None = None, name: str | None = None) -> Path:
        """The directory of a session (or one of its areas, or a file in one); never outside it.

        Raises:
            NotFoundError: ``session_id`` is not a server-made id, or the path would escape.
        """
        if not SESSION_ID.fullmatch(session_id):
            raise NotFoundError("workspace session not found")
        base = self.root / session_id
        if area is None:
            return base
        target = base / area / filenames.safe_filename(name) if name is not None else base / area
        if not target.resolve().is_relative_to(base.resolve()):
            raise NotFoundError("file not found")
        return target

    # -- sessions ----------------------------------------------------------------------------

    def create_session(self, user_id: int, name: str | None = None) -> WorkspaceSession:
        if len(self.records.sessions_of(user_id)) >= self.limits.max_sessions_per_user:
            raise SessionLimitError(
                f"at most {self.limits.max_sessions_per_user} workspace sessions per user; delete one first"
            )
        now = self._clock()
        session_id = secrets.token_hex(16)
        session = WorkspaceSession(session_id, user_id, (name or "workspace")[:120], now, now)
        self.records.save_session(session)
        self.records.add_to_index(session)
        for area in AREAS:
            self.path(session_id, area).mkdir(parents=True, exist_ok=True)
        return session

    def get_session(self, session_id: str) -> WorkspaceSession | None:
        """The live session, or None (unknown, expired, or being deleted)."""
        if not SESSION_ID.fullmatch(session_id):
            return None
        session = self.records.get_session(session_id)
        return session if session is not None and session.state == "active" else None

    def owned_session(self, session_id: str, user_id: int) -> WorkspaceSession:
        """The caller's live session, sliding its idle expiry.

        Raises:
            NotFoundError: missing, expired, or another user's (indistinguishable on purpose).
        """
        session = self.get_session(session_id)
        if session is None or session.owner_id != user_id:
            raise NotFoundError("workspace session not found")
        now = self._clock()
        if now - session.last_activity >= ACTIVITY_WRITE_INTERVAL_SECONDS:
            session = dataclasses.replace(session, last_activity=now)
            self.records.save_session(session)
        else:
            self.records.cache.touch(f"session:{session_id}:meta", self.records.idle_ttl)
        return session

    def list_user_sessions(self, user_id: int) -> list[WorkspaceSession]:
        return [session for session in self.records.sessions_of(user_id) if session.state == "active"]

    # -- files -------------------------------------------------------------------------------

    async def save_upload(
        self, session: WorkspaceSession, chunks: AsyncIterator[bytes], content_type: str
    ) -> list[StoredFile]:
        """Stream every file of a multipart body into ``input/``; all or nothing.

        Raises:
            UnsupportedUploadTypeError (415), UploadTooLargeError / QuotaExceededError (413),
            MalformedUploadError (400). No partial or temporary file is left behind.
        """
        remaining_quota = self.limits.user_quota_bytes - self.user_usage_bytes(session.owner_id)
        sink = _UploadSink(self, session, self.limits.max_upload_bytes, remaining_quota, self._clock)
        try:
            await receive_files(chunks, content_type, sink)
        except BaseException:
            sink.discard()
            raise
        if not sink.saved:
            raise MalformedUploadError("the upload contained no file")
        for stored in sink.saved:
            self.records.save_file(session.id, stored)
        return sink.saved

    def list_files(self, session_id: str) -> list[StoredFile]:
        return self.records.files_of(session_id)

    def open_file(self, session_id: str, file_id: str) -> tuple[Path, StoredFile]:
        """The path and record of a stored file. Raises ``NotFoundError``."""
        stored = self.records.get_file(session_id, file_id)
        if stored is None:
            raise NotFoundError("file not found")
        area, _, name = stored.relative_path.partition("/")
        path = self.path(session_id, area, name)  # type: ignore[arg-type]
        if not path.is_file():
            raise NotFoundError("file not found")
        return path, stored

    def register_outputs(self, session_id: str) -> list[StoredFile]:
        """Record every file under ``output/`` (replacing earlier output records)."""
        for stored in self.records.files_of(session_id):
            if stored.kind == "output":
                self.records.delete_file(session_id, stored.id)
        outputs = []
        for path in sorted(self.path(session_id, "output").iterdir()):
            if path.is_file() and not path.name.startswith("."):
                stored = describe_file(path, "output", f"output/{path.name}", self._clock())
                self.records.save_file(session_id, stored)
                outputs.append(stored)
        return outputs

    def output_files(self, session_id: str) -> list[tuple[Path, StoredFile]]:
        files = [stored for stored in self.list_files(session_id) if stored.kind == "output"]
        return [(self.path(session_id, "output", stored.name), stored) for stored in files]

    def user_usage_bytes(self, user_id: int) -> int:
        return sum(
            stored.size
            for session in self.records.sessions_of(user_id)
            for stored in self.list_files(session.id)
        )

    # -- cleanup -----------------------------------------------------------------------------

    def cleanup_session(self, session_id: str) -> CleanupReport:
        """Remove everything of a session: jobs, index, cache keys, files. Idempotent; each step
        isolated and logged, so one failing never stops the others."""
        report = CleanupReport(session_id)
        session = self.records.get_session(session_id)
        if session is not None and session.state != "deleting":
            # A tombstone first: the session disappears for users now, and a crash from here on
            # leaves something the sweep recognises and finishes.
            self.records.save_session(dataclasses.replace(session, state="deleting"))
        steps = [
            *self.cleanup_steps,
            ("cache entries", self.records.clear_session),
            ("files", self._remove_directory),
        ]
        for name, step in steps:
            try:
                report.steps[name] = step(session_id)
            except Exception:
                logger.exception(
                    "cleanup of workspace session %s: step %r failed; continuing", session_id, name
                )
                report.failed_steps.append(name)
        return report

    def cleanup_user_sessions(self, user_id: int) -> int:
        """Clean every workspace session of a user (live or not yet swept); return how many."""
        session_ids = self.records.indexed_session_ids(user_id)
        for session_id in session_ids:
            self.cleanup_session(session_id)
        return len(session_ids)

    def sweep_expired(self) -> int:
        """Clean sessions whose metadata expired or that a cleanup left half done, and orphan
        directories older than the grace period; return how many sessions were cleaned."""
        now = self._clock()
        candidates = set(self.records.session_ids_with_keys())
        if self.root.is_dir():
            for entry in self.root.iterdir():
                old_enough = now - entry.stat().st_mtime >= self.limits.orphan_grace_seconds
                if SESSION_ID.fullmatch(entry.name) and old_enough:
                    candidates.add(entry.name)
        cleaned = 0
        for session_id in sorted(candidates):
            session = self.records.get_session(session_id)
            if session is None or session.state == "deleting":
                self.cleanup_session(session_id)
                cleaned += 1
        self._remove_stale_parts(now)
        return cleaned

    def _remove_stale_parts(self, now: float) -> None:
        # Part files of uploads whose process died mid-stream (a live upload keeps writing, so
        # its part file stays newer than the grace period).
        for part in self.root.glob(f"*/input/{PART_PREFIX}*"):
            if now - part.stat().st_mtime >= self.limits.orphan_grace_seconds:
                part.unlink(missing_ok=True)

    def _remove_directory(self, session_id: str) -> int:
        directory = self.path(session_id)
        if not directory.exists():
            return 0
        size = sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
        shutil.rmtree(directory)
        return size


class _UploadSink:
    """Writes each uploaded file to a hidden part file, then links it under its final name."""

    def __init__(
        self,
        storage: StorageService,
        session: WorkspaceSession,
        max_file_bytes: int,
        quota_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self.budget = storage.upload_budget
        self.user_id = session.owner_id
        self.charged = 0
        self.directory = storage.path(session.id, "input")
        self.max_file_bytes = max_file_bytes
        self.quota_bytes = quota_bytes
        self.clock = clock
        self.saved: list[StoredFile] = []
        self.total = 0
        self._part: Path | None = None
        self._handle: BinaryIO | None = None
        self._name = ""
        self._size = 0
        self._hash = hashlib.sha256()

    def begin(self, filename: str) -> None:
        name = filenames.safe_filename(filename or "upload")
        if not name.lower().endswith(UPLOAD_SUFFIXES):
            raise UnsupportedUploadTypeError(f"{name!r}: only .zip and .xml files are accepted")
        self._name, self._size, self._hash = name, 0, hashlib.sha256()
        self._part = self.directory / f"{PART_PREFIX}{uuid.uuid4().hex}.part"
        self._handle = self._part.open("xb")

    def write(self, data: bytes) -> None:
        self._size += len(data)
        self.total += len(data)
        if self._size > self.max_file_bytes:
            raise UploadTooLargeError(f"{self._name!r} is larger than the {self.max_file_bytes}-byte limit")
        if self.total > self.quota_bytes:
            raise QuotaExceededError(
                f"this upload would exceed your disk quota: {max(self.quota_bytes, 0)} bytes left",
                extra={"quota_remaining_bytes": max(self.quota_bytes, 0)},
            )
        if self.total - self.charged >= UPLOAD_CHARGE_BLOCK:
            self._charge()
        self._hash.update(data)
        assert self._handle is not None
        self._handle.write(data)

    def _charge(self) -> None:
        # Pay as the bytes arrive (a budget smaller than a block still admits small uploads).
        if self.budget is not None and self.total > self.charged:
            self.budget.charge(self.user_id, self.total - self.charged)
        self.charged = self.total

    def end(self) -> None:
        self._charge()
        assert self._part is not None
        assert self._handle is not None
        self._handle.close()
        self._handle = None
        final = self._link_unique(self._part)
        self._part.unlink()
        self._part = None
        relative = f"input/{final.name}"
        self.saved.append(describe_file(final, "input", relative, self.clock(), self._hash.hexdigest()))

    def _link_unique(self, part: Path) -> Path:
        taken = {entry.name for entry in self.directory.iterdir()}
        while True:
            final = self.directory / filenames.deduplicated(self._name, taken)
            try:
                os.link(part, final)  # atomic, and never replaces an existing file
                return final
            except FileExistsError:
                taken.add(final.name)

    def discard(self) -> None:
        """Remove the part being written and every file of this upload already linked."""
        if self._handle is not None:
            self._handle.close()
        if self._part is not None:
            self._part.unlink(missing_ok=True)
        for stored in self.saved:
            (self.directory / stored.name).unlink(missing_ok=True)
        self.saved = []
        if self.budget is not None and self.charged:
            self.budget.refund(self.user_id, self.charged)  # nothing was kept
        self.charged = self.total = 0


def describe_file(
    path: Path, kind: FileKind, relative: str, now: float, sha256: str | None = None
) -> StoredFile:
    if sha256 is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
        sha256 = digest.hexdigest()
    suffix = path.suffix.lower()
    content_type = (
        CONTENT_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    return StoredFile(
        uuid.uuid4().hex[:16], path.name, kind, relative, path.stat().st_size, sha256, content_type, now
    )
