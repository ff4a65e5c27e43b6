"""Login, refresh, logout, password change, and the check behind every authenticated request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from api.core.cache_contract import CacheBackend
from api.core.config import Settings
from api.core.database import Database
from api.core.security import (
    AccessTokens,
    InvalidTokenError,
    PasswordHashing,
    hash_refresh_token,
    new_refresh_token,
)
from api.errors import AppError, UnauthorizedError
from api.models import RefreshToken, User
from api.repositories import audit, refresh_tokens, users
from api.services.login_sessions import LoginSessions
from api.services.login_throttle import LoginThrottle

logger = logging.getLogger(__name__)

MAX_PASSWORD_LENGTH = 1024


class InvalidCredentialsError(UnauthorizedError):
    code = "invalid_credentials"


class InvalidAccessTokenError(UnauthorizedError):
    code = "invalid_token"


class SessionEndedError(UnauthorizedError):
    code = "session_ended"


class InactiveUserError(UnauthorizedError):
    code = "user_inactive"


class InvalidRefreshTokenError(UnauthorizedError):
    code = "invalid_refresh_token"


class RefreshTokenReusedError(UnauthorizedError):
    code = "refresh_token_reused"


class WeakPasswordError(AppError):
    status_code = 422
    code = "weak_password"


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Who is asking, for the audit log and the refresh-token record."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: int
    username: str
    role: str
    login_session_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    user: User


@dataclass(slots=True)
class LogoutReport:
    user_id: int
    refresh_tokens_revoked: int = 0
    login_sessions_ended: int = 0
    workspace_sessions_cleaned: int = 0
    cache_entries_cleared: int = 0
    failed_steps: list[str] = field(default_factory=list)


UserCleanup = Callable[[int], int]
"""Removes what a user left behind (workspace sessions); returns how many were cleaned."""


class AuthService:
    def __init__(
        self,
        database: Database,
        cache: CacheBackend,
        tokens: AccessTokens,
        hashing: PasswordHashing,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._database = database
        self._cache = cache
        self._tokens = tokens
        self._hashing = hashing
        self._settings = settings
        self._clock = clock
        self.login_sessions = LoginSessions(
            cache, settings.login_session_idle_seconds, settings.login_session_max_seconds, clock
        )
        self.user_cleanups: list[UserCleanup] = []
        self.login_throttle: LoginThrottle | None = None

    # -- passwords ---------------------------------------------------------------------------

    def check_new_password(self, username: str, password: str) -> None:
        """Raise ``WeakPasswordError`` naming the rule ``password`` breaks."""
        minimum = self._settings.password_min_length
        if len(password) < minimum:
            raise WeakPasswordError(f"password must have at least {minimum} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise WeakPasswordError(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
        if users.username_key(username) in password.casefold():
            raise WeakPasswordError("password must not contain the username")

    def hash_password(self, password: str) -> str:
        return self._hashing.hash(password)

    # -- login and tokens --------------------------------------------------------------------

    def login(self, username: str, password: str, meta: RequestMeta) -> TokenPair:
        """Check credentials and open a login session.

        Raises:
            InvalidCredentialsError: unknown user, wrong password or disabled account (one message).
        """
        if self.login_throttle is not None:
            self.login_throttle.attempt(username, meta.ip)
        with self._database.session() as session:
            user = users.get_by_username(session, username)
        # Verify even for an unknown user (against a dummy hash) so timing does not tell them apart.
        valid = self._hashing.verify(user.password_hash if user else None, password)
        if user is None or not valid or not user.is_active:
            self._audit("login_failed", user.id if user else None, f"username={username[:64]!r}", meta)
            raise InvalidCredentialsError("Incorrect username or password")
        if self.login_throttle is not None:
            self.login_throttle.succeeded(username, meta.ip)
        login = self.login_sessions.create(user.id, meta.user_agent, meta.ip)
        with self._database.session(write=True) as session:
            if self._hashing.needs_rehash(user.password_hash):
                stored = users.get(session, user.id)
                if stored is not None:
                    stored.password_hash = self._hashing.hash(password)
            _, token = self._add_refresh_token(session, user.id, login.session_id, login.ends_at, None, meta)
            audit.record(session, "login", user_id=user.id, ip=meta.ip, request_id=meta.request_id)
        return self._token_pair(user, login.session_id, token, login.ends_at)

    def refresh(self, refresh_token: str, meta: RequestMeta) -> TokenPair:
        """Rotate a refresh token: the old one is spent, a new pair is issued in the same family.

        Raises:
            InvalidRefreshTokenError: unknown, revoked or expired token, or its login session ended.
            RefreshTokenReusedError: the token was already rotated; its whole family is revoked.
        """
        now = self._now()
        with self._database.session(write=True) as session:
            stored = refresh_tokens.get_by_hash(session, hash_refresh_token(refresh_token), for_update=True)
            if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
                raise InvalidRefreshTokenError("Refresh token is invalid or expired")
            refusal = self._refusal(session, stored, meta)
            if refusal is not None:
                # Commit the revocation first: raising inside the transaction would roll it back.
                refresh_tokens.revoke_family(session, stored.family_id, now)
            else:
                ends_at = stored.expires_at.timestamp()
                new, token = self._add_refresh_token(
                    session, stored.user_id, stored.login_session_id, ends_at, stored.family_id, meta
                )
                stored.rotated_at = now
                stored.replaced_by = new.id
                user = users.get(session, stored.user_id)
        if refusal is not None:
            raise refusal
        assert user is not None
        return self._token_pair(user, stored.login_session_id, token, ends_at)

    def _refusal(self, session: Session, stored: RefreshToken, meta: RequestMeta) -> UnauthorizedError | None:
        """Why ``stored`` may not be rotated (reuse, ended login, disabled user), or None."""
        if stored.rotated_at is not None:
            self.login_sessions.end(stored.user_id, stored.login_session_id)
            audit.record(
                session,
                "refresh_token_reused",
                user_id=stored.user_id,
                ip=meta.ip,
                request_id=meta.request_id,
            )
            return RefreshTokenReusedError(
                "Refresh token was already used; every token of this login is revoked"
            )
        user = users.get(session, stored.user_id)
        if user is None or not user.is_active:
            return InvalidRefreshTokenError("This account is disabled or no longer exists")
        if not self.login_sessions.check(stored.user_id, stored.login_session_id):
            return InvalidRefreshTokenError("The login session of this refresh token has ended")
        return None

    def authenticate(self, access_token: str) -> Principal:
        """The caller behind an access token, checked against the live login session and user.

        Raises:
            InvalidAccessTokenError, SessionEndedError, InactiveUserError
        """
        try:
            claims = self._tokens.verify(access_token)
        except InvalidTokenError as exc:
            raise InvalidAccessTokenError(f"Invalid access token: {exc}") from None
        if not self.login_sessions.check(claims.user_id, claims.login_session_id):
            raise SessionEndedError("The login session has ended; log in again")
        with self._database.session() as session:
            user = users.get(session, claims.user_id)
        if user is None or not user.is_active:
            raise InactiveUserError("This account is disabled or no longer exists")
        return Principal(user.id, user.username, user.role, claims.login_session_id)

    def _add_refresh_token(
        self,
        session: Session,
        user_id: int,
        login_session_id: str,
        ends_at: float,
        family_id: str | None,
        meta: RequestMeta,
    ) -> tuple[RefreshToken, str]:
        """Store a new refresh token (hashed); return the record and the plain token, shown once."""
        token = new_refresh_token()
        record = RefreshToken(
            token_hash=hash_refresh_token(token),
            family_id=family_id or login_session_id,
            user_id=user_id,
            login_session_id=login_session_id,
            expires_at=datetime.fromtimestamp(ends_at, UTC),
            user_agent=(meta.user_agent or "")[:255] or None,
            ip=meta.ip,
        )
        return refresh_tokens.add(session, record), token

    def _token_pair(self, user: User, login_session_id: str, refresh_token: str, ends_at: float) -> TokenPair:
        now = self._clock()
        access, _ = self._tokens.issue(user.id, login_session_id, now)
        return TokenPair(
            access_token=access,
            expires_in=self._tokens.lifetime_seconds,
            refresh_token=refresh_token,
            refresh_expires_in=max(0, int(ends_at - now)),
            user=user,
        )

    # -- logout and session ending -----------------------------------------------------------

    def identify_for_logout(self, access_token: str | None, refresh_token: str | None) -> int:
        """The user to log out: from the access token (even just expired), else the refresh cookie.

        Raises:
            InvalidAccessTokenError: neither credential identifies a user.
        """
        if access_token:
            try:
                return self._tokens.verify(access_token, verify_expiry=False).user_id
            except InvalidTokenError:
                pass
        if refresh_token:
            with self._database.session() as session:
                stored = refresh_tokens.get_by_hash(session, hash_refresh_token(refresh_token))
            if stored is not None and stored.revoked_at is None and stored.expires_at > self._now():
                return stored.user_id
        raise InvalidAccessTokenError("Log out needs a valid access token or refresh cookie")

    def logout(self, user_id: int, meta: RequestMeta) -> LogoutReport:
        """End everything the user has open; each step is isolated and logged."""
        report = LogoutReport(user_id)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("revoke refresh tokens", lambda: self._revoke_all(report)),
            ("end login sessions", lambda: self._end_sessions(report)),
            ("clean workspace sessions", lambda: self._clean_workspaces(report)),
            ("clear user cache", lambda: self._clear_user_cache(report)),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:
                logger.exception("logout of user %s: step %r failed; continuing", user_id, name)
                report.failed_steps.append(name)
        self._audit("logout", user_id, f"failed_steps={report.failed_steps}", meta)
        return report

    def _revoke_all(self, report: LogoutReport) -> None:
        with self._database.session(write=True) as session:
            report.refresh_tokens_revoked = refresh_tokens.revoke_user(session, report.user_id, self._now())

    def _end_sessions(self, report: LogoutReport) -> None:
        report.login_sessions_ended = self.login_sessions.end_all(report.user_id)

    def _clean_workspaces(self, report: LogoutReport) -> None:
        report.workspace_sessions_cleaned = sum(cleanup(report.user_id) for cleanup in self.user_cleanups)

    def _clear_user_cache(self, report: LogoutReport) -> None:
        report.cache_entries_cleared = self._cache.clear_pattern(f"user:{report.user_id}:")

    def end_user_access(self, user_id: int, *, keep_login_session: str | None = None) -> int:
        """Revoke refresh tokens and end login sessions (all, or all but one); return sessions ended."""
        with self._database.session(write=True) as session:
            refresh_tokens.revoke_user(session, user_id, self._now(), except_login_session=keep_login_session)
        if keep_login_session is None:
            return self.login_sessions.end_all(user_id)
        return self.login_sessions.end_others(user_id, keep_login_session)

    def change_password(self, principal: Principal, current: str, new: str, meta: RequestMeta) -> int:
        """Change the caller's password and end every other login session; return how many ended.

        Raises:
            InvalidCredentialsError: ``current`` is wrong. WeakPasswordError: ``new`` breaks a rule.
        """
        with self._database.session() as session:
            user = users.get(session, principal.user_id)
        if user is None or not self._hashing.verify(user.password_hash, current):
            raise InvalidCredentialsError("Current password is incorrect")
        self.check_new_password(user.username, new)
        with self._database.session(write=True) as session:
            stored = users.get(session, principal.user_id)
            assert stored is not None
            stored.password_hash = self._hashing.hash(new)
            stored.password_changed_at = self._now()
            audit.record(session, "password_changed", user_id=user.id, ip=meta.ip, request_id=meta.request_id)
        return self.end_user_access(user.id, keep_login_session=principal.login_session_id)

    # -- helpers -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _audit(self, action: str, user_id: int | None, detail: str, meta: RequestMeta) -> None:
        try:
            with self._database.session(write=True) as session:
                audit.record(
                    session, action, user_id=user_id, detail=detail, ip=meta.ip, request_id=meta.request_id
                )
        except Exception:
            logger.exception("could not write audit entry %s for user %s", action, user_id)
