"""Workspace-session metadata in the session store (keys under ``session:{id}:`` and ``user:{uid}:``).

- ``session:{id}:meta``: owner, name, times, state; its TTL is the sliding idle expiry.
- ``session:{id}:file:{file_id}``: one record per stored file (name, kind, size, SHA-256, ...).
- ``session:{id}:owner``: the owner's id, kept after the metadata expires so cleanup can find the
  per-user index entry.
- ``user:{uid}:workspace:{id}``: the per-user index.
File records and index entries carry a long TTL; cleanup removes them, and the sweep removes any
left behind by a session whose metadata expired.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from api.core.cache_contract import CacheBackend

# Long enough never to expire before their session; cleanup and the sweep remove them.
RECORD_TTL_SECONDS = 400 * 24 * 3600
FileKind = Literal["input", "output"]
SessionState = Literal["active", "deleting"]


@dataclass(frozen=True, slots=True)
class WorkspaceSession:
    id: str
    owner_id: int
    name: str
    created_at: float
    last_activity: float
    state: SessionState = "active"


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    name: str
    kind: FileKind
    relative_path: str  # inside the session directory, e.g. "input/deposits.zip"
    size: int
    sha256: str
    content_type: str
    created_at: float


def meta_key(session_id: str) -> str:
    return f"session:{session_id}:meta"


def owner_key(session_id: str) -> str:
    return f"session:{session_id}:owner"


def file_key(session_id: str, file_id: str) -> str:
    return f"session:{session_id}:file:{file_id}"


def session_prefix(session_id: str) -> str:
    return f"session:{session_id}:"


def index_key(user_id: int, session_id: str) -> str:
    return f"user:{user_id}:workspace:{session_id}"


def index_prefix(user_id: int) -> str:
    return f"user:{user_id}:workspace:"


class WorkspaceRecords:
    """Reads and writes the records above; no filesystem access."""

    def __init__(self, cache: CacheBackend, idle_ttl_seconds: float) -> None:
        self.cache = cache
        self.idle_ttl = idle_ttl_seconds

    def save_session(self, session: WorkspaceSession) -> None:
        self.cache.set(meta_key(session.id), asdict(session), self.idle_ttl)

    def add_to_index(self, session: WorkspaceSession) -> None:
        self.cache.set_many(
            {
                owner_key(session.id): session.owner_id,
                index_key(session.owner_id, session.id): session.created_at,
            },
            RECORD_TTL_SECONDS,
        )

    def get_session(self, session_id: str) -> WorkspaceSession | None:
        return _session(self.cache.get(meta_key(session_id)))

    def sessions_of(self, user_id: int) -> list[WorkspaceSession]:
        ids = [key.rsplit(":", 1)[1] for key in self.cache.keys(index_prefix(user_id))]
        found = self.cache.get_many(meta_key(session_id) for session_id in ids)
        sessions = [_session(found.get(meta_key(session_id))) for session_id in ids]
        live = [session for session in sessions if session is not None and session.owner_id == user_id]
        return sorted(live, key=lambda session: session.created_at)

    def indexed_session_ids(self, user_id: int) -> list[str]:
        return [key.rsplit(":", 1)[1] for key in self.cache.keys(index_prefix(user_id))]

    def save_file(self, session_id: str, stored: StoredFile) -> None:
        self.cache.set(file_key(session_id, stored.id), asdict(stored), RECORD_TTL_SECONDS)

    def files_of(self, session_id: str) -> list[StoredFile]:
        records = self.cache.get_many(self.cache.keys(f"session:{session_id}:file:"))
        files = [StoredFile(**record) for record in records.values() if isinstance(record, dict)]
        return sorted(files, key=lambda stored: (stored.kind, stored.relative_path))

    def get_file(self, session_id: str, file_id: str) -> StoredFile | None:
        record = self.cache.get(file_key(session_id, file_id))
        return StoredFile(**record) if isinstance(record, dict) else None

    def delete_file(self, session_id: str, file_id: str) -> None:
        self.cache.delete(file_key(session_id, file_id))

    def clear_session(self, session_id: str) -> int:
        """Remove every key of the session and its index entry; return how many were live."""
        owner = self.cache.get(owner_key(session_id))
        removed = self.cache.clear_pattern(session_prefix(session_id))
        if isinstance(owner, int):
            removed += int(self.cache.delete(index_key(owner, session_id)))
        return removed

    def session_ids_with_keys(self) -> set[str]:
        return {key.split(":", 2)[1] for key in self.cache.keys("session:")}


def _session(record: Any) -> WorkspaceSession | None:
    return WorkspaceSession(**record) if isinstance(record, dict) else None
