"""Passwords (argon2id), access tokens (JWT, HS256) and refresh tokens (opaque, stored hashed)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Final

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

JWT_ALGORITHM: Final = "HS256"
JWT_LEEWAY_SECONDS: Final = 10
REFRESH_TOKEN_BYTES: Final = 32  # 256 bits


class InvalidTokenError(Exception):
    """An access token is malformed, forged, expired or meant for someone else."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    login_session_id: str
    token_id: str
    expires_at: float


class PasswordHashing:
    """argon2id hashing with a dummy hash, so an unknown user costs as much as a wrong password."""

    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with ``password_hash=None`` verifies against the dummy."""
        try:
            return (
                self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


class AccessTokens:
    """Issues and verifies access tokens; decoding pins the algorithm, issuer and audience."""

    def __init__(self, secret: str, issuer: str, audience: str, lifetime_seconds: int) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds

    def issue(self, user_id: int, login_session_id: str, now: float) -> tuple[str, AccessClaims]:
        claims = AccessClaims(user_id, login_session_id, uuid.uuid4().hex, now + self.lifetime_seconds)
        payload = {
            "sub": str(user_id),
            "sid": login_session_id,
            "jti": claims.token_id,
            "iat": int(now),
            "exp": int(claims.expires_at),
            "iss": self.issuer,
            "aud": self.audience,
        }
        return jwt.encode(payload, self._secret, algorithm=JWT_ALGORITHM), claims

    def verify(self, token: str, *, verify_expiry: bool = True) -> AccessClaims:
        """Decode and check a token.

        Raises:
            InvalidTokenError: bad signature or algorithm, wrong issuer/audience, expired, malformed.
        """
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[JWT_ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                leeway=JWT_LEEWAY_SECONDS,
                options={
                    "require": ["sub", "sid", "jti", "iat", "exp", "iss", "aud"],
                    "verify_exp": verify_expiry,
                },
            )
            return AccessClaims(
                int(payload["sub"]), str(payload["sid"]), str(payload["jti"]), float(payload["exp"])
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidTokenError(str(exc)) from None

    def user_id_of(self, token: str) -> str | None:
        """The user id of a valid token, else None (used to key rate limits by user)."""
        try:
            return str(self.verify(token).user_id)
        except InvalidTokenError:
            return None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> str:
    # The token is 256 random bits, so a fast unsalted hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_login_session_id() -> str:
    return secrets.token_urlsafe(18)
