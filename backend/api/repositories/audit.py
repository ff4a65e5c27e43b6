"""Queries on ``audit_log``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import AuditEntry


def record(
    session: Session,
    action: str,
    *,
    user_id: int | None = None,
    detail: str = "",
    ip: str | None = None,
    request_id: str | None = None,
) -> None:
    session.add(AuditEntry(action=action, user_id=user_id, detail=detail, ip=ip, request_id=request_id))


def list_page(session: Session, offset: int, limit: int, user_id: int | None = None) -> Sequence[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).offset(offset).limit(limit)
    if user_id is not None:
        query = query.where(AuditEntry.user_id == user_id)
    return session.scalars(query).all()
