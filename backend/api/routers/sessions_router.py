"""Workspace sessions and their files (owner only: anyone else gets 404)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse

from api.deps import CurrentUser, OwnedSession, StorageDep
from api.schemas.sessions import CleanupPublic, FilePublic, SessionCreate, SessionPublic
from api.services.filenames import content_disposition
from api.services.zip_stream import stream_zip

router = APIRouter(prefix="/sessions", tags=["workspace sessions"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}


@router.post("", status_code=status.HTTP_201_CREATED)
def create_session(
    user: CurrentUser, storage: StorageDep, body: SessionCreate | None = None
) -> SessionPublic:
    """Open a new workspace session."""
    return SessionPublic.of(storage.create_session(user.user_id, body.name if body else None))


@router.get("")
def list_sessions(user: CurrentUser, storage: StorageDep) -> list[SessionPublic]:
    """The caller's live workspace sessions, oldest first."""
    return [SessionPublic.of(session) for session in storage.list_user_sessions(user.user_id)]


@router.get("/{session_id}")
def get_session(session: OwnedSession) -> SessionPublic:
    """One workspace session."""
    return SessionPublic.of(session)


@router.delete("/{session_id}")
def delete_session(session: OwnedSession, storage: StorageDep) -> CleanupPublic:
    """Delete a workspace session and everything in it (jobs, index, cache entries, files)."""
    return CleanupPublic.of(storage.cleanup_session(session.id))


@router.post("/{session_id}/files", status_code=status.HTTP_201_CREATED, openapi_extra=UPLOAD_BODY)
async def upload_files(session: OwnedSession, storage: StorageDep, request: Request) -> list[FilePublic]:
    """Upload one or several .zip/.xml files (multipart/form-data), streamed to disk."""
    content_type = request.headers.get("content-type", "")
    saved = await storage.save_upload(session, request.stream(), content_type)
    return [FilePublic.of(stored) for stored in saved]


@router.get("/{session_id}/files")
def list_files(session: OwnedSession, storage: StorageDep) -> list[FilePublic]:
    """Inputs and outputs of the session, with sizes and SHA-256 hashes."""
    return [FilePublic.of(stored) for stored in storage.list_files(session.id)]


@router.get("/{session_id}/files/{file_id}", response_class=FileResponse)
def download_file(session: OwnedSession, file_id: str, storage: StorageDep, request: Request) -> Response:
    """Download a file (Range requests supported; ETag is the SHA-256)."""
    path, stored = storage.open_file(session.id, file_id)
    etag = f'"{stored.sha256}"'
    headers = {
        "ETag": etag,
        "Content-Disposition": content_disposition(stored.name),
        "Cache-Control": "private",
    }
    if etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return FileResponse(path, media_type=stored.content_type, headers=headers)


@router.get("/{session_id}/outputs.zip", response_class=StreamingResponse)
def download_outputs(session: OwnedSession, storage: StorageDep) -> StreamingResponse:
    """Every output file of the session as one ZIP, streamed."""
    files = [(path, stored.name) for path, stored in storage.output_files(session.id)]
    headers = {"Content-Disposition": content_disposition(f"outputs-{session.id[:8]}.zip")}
    return StreamingResponse(stream_zip(files), media_type="application/zip", headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
