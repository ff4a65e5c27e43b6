"""Queries on ``refresh_tokens``: stored hashed, grouped in families (one per login)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.models import RefreshToken


def get_by_hash(session: Session, token_hash: str, *, for_update: bool = False) -> RefreshToken | None:
    query = select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    if for_update:
        query = query.with_for_update()  # PostgreSQL row lock; SQLite already holds BEGIN IMMEDIATE
    return session.scalars(query).first()


def add(session: Session, token: RefreshToken) -> RefreshToken:
    session.add(token)
    session.flush()
    return token


def revoke_family(session: Session, family_id: str, now: datetime) -> int:
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def revoke_user(
    session: Session, user_id: int, now: datetime, *, except_login_session: str | None = None
) -> int:
    query = update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
    if except_login_session is not None:
        query = query.where(RefreshToken.login_session_id != except_login_session)
    return int(session.execute(query.values(revoked_at=now)).rowcount)  # type: ignore[attr-defined]
