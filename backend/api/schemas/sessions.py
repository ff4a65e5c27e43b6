"""Request and response models of the workspace-session routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.services.storage_service import CleanupReport
from api.services.workspace_records import StoredFile, WorkspaceSession


class SessionCreate(BaseModel):
    name: str | None = Field(default=None, max_length=120)


class SessionPublic(BaseModel):
    id: str
    name: str
    created_at: datetime
    last_activity: datetime

    @classmethod
    def of(cls, session: WorkspaceSession) -> SessionPublic:
        return cls(
            id=session.id,
            name=session.name,
            created_at=datetime.fromtimestamp(session.created_at, UTC),
            last_activity=datetime.fromtimestamp(session.last_activity, UTC),
        )


class FilePublic(BaseModel):
    id: str
    name: str
    kind: Literal["input", "output"]
    size: int
    sha256: str
    content_type: str
    created_at: datetime

    @classmethod
    def of(cls, stored: StoredFile) -> FilePublic:
        return cls(
            id=stored.id,
            name=stored.name,
            kind=stored.kind,
            size=stored.size,
            sha256=stored.sha256,
            content_type=stored.content_type,
            created_at=datetime.fromtimestamp(stored.created_at, UTC),
        )


class CleanupPublic(BaseModel):
    session_id: str
    steps: dict[str, int]
    failed_steps: list[str]

    @classmethod
    def of(cls, report: CleanupReport) -> CleanupPublic:
        return cls(session_id=report.session_id, steps=report.steps, failed_steps=report.failed_steps)
