"""User administration: create, list, update (role, active), bootstrap, and the audit log."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from api.core.database import Database
from api.errors import AppError, ConflictError, NotFoundError
from api.models import AuditEntry, User
from api.repositories import audit, users
from api.services.auth_service import AuthService, RequestMeta

logger = logging.getLogger(__name__)

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{2,63}")


class InvalidUsernameError(AppError):
    status_code = 422
    code = "invalid_username"


@dataclass(frozen=True, slots=True)
class UserChanges:
    role: str | None = None
    is_active: bool | None = None


class UserService:
    def __init__(self, database: Database, auth: AuthService) -> None:
        self._database = database
        self._auth = auth

    def create_user(self, username: str, password: str, role: str, meta: RequestMeta | None = None) -> User:
        """Create a user after checking the name and password rules.

        Raises:
            InvalidUsernameError, WeakPasswordError, ConflictError (name taken, in any letter case).
        """
        username = username.strip()
        if not USERNAME_PATTERN.fullmatch(username):
            raise InvalidUsernameError(
                "username must be 3-64 letters, digits or . _ @ -, starting with a letter or digit"
            )
        self._auth.check_new_password(username, password)
        password_hash = self._auth.hash_password(password)
        meta = meta or RequestMeta()
        try:
            with self._database.session(write=True) as session:
                if users.get_by_username(session, username) is not None:
                    raise ConflictError(f"username {username!r} is taken")
                user = users.add(session, username, password_hash, role)
                audit.record(session, "user_created", user_id=user.id, detail=f"role={role}", ip=meta.ip)
        except IntegrityError:
            raise ConflictError(f"username {username!r} is taken") from None
        return user

    def get_user(self, user_id: int) -> User:
        """Raises ``NotFoundError`` if there is no such user."""
        with self._database.session() as session:
            user = users.get(session, user_id)
        if user is None:
            raise NotFoundError(f"user {user_id} not found")
        return user

    def list_users(self, offset: int, limit: int) -> Sequence[User]:
        with self._database.session() as session:
            return users.list_page(session, offset, limit)

    def update_user(self, user_id: int, changes: UserChanges, meta: RequestMeta) -> User:
        """Change role or active flag; disabling ends the user's login sessions at once.

        Raises:
            NotFoundError: no such user.
        """
        with self._database.session(write=True) as session:
            user = users.get(session, user_id)
            if user is None:
                raise NotFoundError(f"user {user_id} not found")
            if changes.role is not None:
                user.role = changes.role
            if changes.is_active is not None:
                user.is_active = changes.is_active
            audit.record(session, "user_updated", user_id=user_id, detail=str(changes), ip=meta.ip)
        if changes.is_active is False:
            self._auth.end_user_access(user_id)
        return user

    def delete_user(self, user_id: int) -> bool:
        """Remove a user, their refresh tokens and login sessions; True if the user existed."""
        with self._database.session(write=True) as session:
            user = users.get(session, user_id)
            if user is None:
                return False
            session.delete(user)
            audit.record(session, "user_deleted", user_id=user_id)
        self._auth.end_user_access(user_id)
        return True

    def list_audit(self, offset: int, limit: int, user_id: int | None = None) -> Sequence[AuditEntry]:
        with self._database.session() as session:
            return audit.list_page(session, offset, limit, user_id)

    def bootstrap_admin(self, username: str, password: str | None) -> str | None:
        """Create the first admin when there are no users; return a generated password (else None).

        Safe when several workers start at once: only one creates the user.
        """
        with self._database.session() as session:
            if users.count(session):
                return None
        generated = password is None
        password = password or secrets.token_urlsafe(15)
        try:
            self.create_user(username, password, "admin")
        except ConflictError:
            return None  # another worker won the race
        logger.warning("created the first admin user %r", username)
        return password if generated else None
