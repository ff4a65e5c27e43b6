"""Upload bytes per user per hour, through the rate-limit primitive (GCRA), with refunds.

Units are KiB: a policy counts at most one unit per nanosecond, and a byte-granular budget of
gigabytes per hour would be finer than that.
"""

from __future__ import annotations

import math

from api.core.rate_limit_policy import Policy
from api.services.rate_limiter import RateLimiter

UNIT_BYTES = 1024
HOUR_SECONDS = 3600.0


class UploadByteBudget:
    """``charge``/``refund`` upload bytes against ``bytes_per_hour`` per user."""

    def __init__(self, limiter: RateLimiter, bytes_per_hour: int) -> None:
        self._limiter = limiter
        self._policies = (Policy("upload_bytes", max(1, bytes_per_hour // UNIT_BYTES), HOUR_SECONDS),)

    def charge(self, user_id: int, size: int) -> None:
        """Raises ``RateLimitedError`` (429 with Retry-After) when the hour's budget is spent."""
        self._limiter.enforce(_key(user_id), self._policies, _units(size))

    def refund(self, user_id: int, size: int) -> None:
        if size > 0:
            self._limiter.refund(_key(user_id), self._policies, _units(size))


def _key(user_id: int) -> str:
    return f"upload-bytes:user:{user_id}"


def _units(size: int) -> int:
    return max(1, math.ceil(size / UNIT_BYTES))
