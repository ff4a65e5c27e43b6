"""Conversions as the HTTP API offers them: start one as a job, read the latest, page through tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.errors import NotFoundError
from api.services.auth_service import Principal
from api.services.conversion_manifest import read_manifest
from api.services.conversion_service import ConversionOptions
from api.services.record_path import parse_record_path
from api.services.storage_service import StorageService
from api.services.table_preview import TableNotFoundError, TablePage, read_page
from api.services.workspace_records import WorkspaceSession
from api.workers.conversion_task import CONVERSION_TASK
from api.workers.queue import JobQueue
from api.workers.records import JobRecord


class ConversionNotFoundError(NotFoundError):
    code = "conversion_not_found"


@dataclass(frozen=True, slots=True)
class LatestConversion:
    job: JobRecord
    manifest: dict[str, Any] | None  # of the outputs in place: the last run that succeeded


class ConversionJobs:
    def __init__(self, queue: JobQueue, storage: StorageService) -> None:
        self._queue = queue
        self._storage = storage

    def start(self, user: Principal, session: WorkspaceSession, options: ConversionOptions) -> JobRecord:
        """Queue a conversion of ``session`` (or return the one already queued or running for it).

        Raises:
            InvalidRecordPathError (422): checked now rather than when the job runs.
        """
        if options.record_path:
            parse_record_path(options.record_path)
        return self._queue.submit(
            CONVERSION_TASK,
            {"formats": list(options.formats), "record_path": options.record_path, "excel": options.excel},
            user_id=user.user_id,
            session_id=session.id,
            dedupe_key=f"conversion:{session.id}",
        )

    def latest(self, session: WorkspaceSession) -> LatestConversion:
        """The session's newest conversion job, with the manifest of the outputs in place.

        Raises:
            ConversionNotFoundError: the session never had a conversion (or its jobs were pruned).
        """
        page = self._queue.list(session_id=session.id, task_type=CONVERSION_TASK, limit=1)
        if not page.items:
            raise ConversionNotFoundError("this workspace session has no conversion yet")
        return LatestConversion(page.items[0], read_manifest(self._storage.path(session.id, "output")))

    def table_page(self, session: WorkspaceSession, record_type: str, offset: int, limit: int) -> TablePage:
        """Rows of one converted table.

        Raises:
            TableNotFoundError: no conversion has succeeded yet, or it made no such table.
        """
        output = self._storage.path(session.id, "output")
        manifest = read_manifest(output)
        if manifest is None:
            raise TableNotFoundError("no conversion of this workspace session has finished yet")
        return read_page(output, manifest, record_type, offset, limit)
