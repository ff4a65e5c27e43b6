"""Login sessions in the session store: ``user:{uid}:login:{sid}``.

An access token names its login session; every authenticated request checks that the session still
exists (so logout, disabling a user or a password change take effect at once on every worker) and
slides its idle expiry, never past the absolute cap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from api.core.cache_contract import CacheBackend
from api.core.security import new_login_session_id


def login_key(user_id: int, login_session_id: str) -> str:
    return f"user:{user_id}:login:{login_session_id}"


def login_prefix(user_id: int) -> str:
    return f"user:{user_id}:login:"


@dataclass(frozen=True, slots=True)
class LoginSession:
    user_id: int
    session_id: str
    created_at: float
    ends_at: float  # the absolute cap


class LoginSessions:
    def __init__(
        self,
        cache: CacheBackend,
        idle_seconds: float,
        max_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._idle = idle_seconds
        self._max = max_seconds
        self._clock = clock

    def create(self, user_id: int, user_agent: str | None, ip: str | None) -> LoginSession:
        now = self._clock()
        session = LoginSession(user_id, new_login_session_id(), now, now + self._max)
        record = {"created_at": now, "ends_at": session.ends_at, "user_agent": user_agent, "ip": ip}
        self._cache.set(login_key(user_id, session.session_id), record, min(self._idle, self._max))
        return session

    def check(self, user_id: int, login_session_id: str) -> bool:
        """True if the session is live; slides its idle expiry up to the absolute cap."""
        key = login_key(user_id, login_session_id)
        record = self._cache.get(key)
        if not isinstance(record, dict):
            return False
        remaining = float(record["ends_at"]) - self._clock()
        if remaining <= 0:
            self._cache.delete(key)
            return False
        return self._cache.touch(key, min(self._idle, remaining))

    def end(self, user_id: int, login_session_id: str) -> bool:
        return self._cache.delete(login_key(user_id, login_session_id))

    def end_all(self, user_id: int) -> int:
        return self._cache.clear_pattern(login_prefix(user_id))

    def end_others(self, user_id: int, keep_login_session_id: str) -> int:
        keep = login_key(user_id, keep_login_session_id)
        return sum(self._cache.delete(key) for key in self._cache.keys(login_prefix(user_id)) if key != keep)

    def count(self, user_id: int) -> int:
        return len(self._cache.keys(login_prefix(user_id)))
