"""Queries on ``users``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import User


def username_key(username: str) -> str:
    """The case-insensitive identity of a username."""
    return username.strip().casefold()


def get(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_by_username(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username_key == username_key(username))).first()


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def list_page(session: Session, offset: int, limit: int) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.id).offset(offset).limit(limit)).all()


def add(session: Session, username: str, password_hash: str, role: str) -> User:
    user = User(
        username=username.strip(), username_key=username_key(username), password_hash=password_hash, role=role
    )
    session.add(user)
    session.flush()
    return user
