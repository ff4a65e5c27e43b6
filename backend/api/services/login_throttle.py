"""Brute-force protection for login: failed attempts per (username, address) and per address.

Every attempt takes one unit from both buckets before the password is checked (so guessing is
throttled however fast the guesses come); a successful login gives its unit back, so only failures
count, and only for the address that made them.
"""

from __future__ import annotations

from api.core.rate_limit_policy import Policy, parse_policies
from api.repositories.users import username_key
from api.services.rate_limiter import RateLimiter


class LoginThrottle:
    def __init__(self, limiter: RateLimiter, per_user_ip: str, per_ip: str) -> None:
        self._limiter = limiter
        self._per_user_ip: tuple[Policy, ...] = parse_policies(per_user_ip, "login_user_ip")
        self._per_ip: tuple[Policy, ...] = parse_policies(per_ip, "login_ip")

    def attempt(self, username: str, ip: str | None) -> None:
        """Take one attempt; raise ``RateLimitedError`` (429 with Retry-After) when over a limit."""
        user_key, ip_key = self._keys(username, ip)
        self._limiter.enforce(ip_key, self._per_ip)
        try:
            self._limiter.enforce(user_key, self._per_user_ip)
        except Exception:
            self._limiter.refund(ip_key, self._per_ip, 1)
            raise

    def succeeded(self, username: str, ip: str | None) -> None:
        """Give back the attempt of a successful login."""
        user_key, ip_key = self._keys(username, ip)
        self._limiter.refund(user_key, self._per_user_ip, 1)
        self._limiter.refund(ip_key, self._per_ip, 1)

    @staticmethod
    def _keys(username: str, ip: str | None) -> tuple[str, str]:
        address = ip or "unknown"
        return f"login:user:{username_key(username)[:128]}:ip:{address}", f"login:ip:{address}"
