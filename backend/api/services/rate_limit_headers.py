"""The rate-limit response fields, in the syntax of draft-ietf-httpapi-ratelimit-headers-10.

The draft ("RateLimit header fields for HTTP") is still moving, so this module is the only place that
knows its syntax; follow a new revision here and nowhere else. Both fields are Structured Field lists
of quoted policy names with parameters:

- ``RateLimit-Policy: "default";q=300;w=60;ret-burst=60``: the quota ``q`` per window ``w`` seconds
  (the steady rate); ``ret-burst`` is our vendor parameter (draft §3.1) for the extra units an idle
  bucket admits at once.
- ``RateLimit: "default";r=120;t=12``: ``r`` units remain now; ``t`` whole seconds (rounded up) until
  more quota is available; left out while the bucket is full.

A refused request also carries ``Retry-After`` in whole seconds, rounded up: the time until that
same request would be admitted, never earlier than the refusing policy's ``t``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from api.core.rate_limit_policy import Policy

if TYPE_CHECKING:
    from api.services.rate_limiter import Decision, PolicyState

DRAFT: Final = "draft-ietf-httpapi-ratelimit-headers-10"
POLICY_FIELD: Final = "RateLimit-Policy"
LIMIT_FIELD: Final = "RateLimit"
RETRY_AFTER: Final = "Retry-After"
BURST_PARAMETER: Final = "ret-burst"
POLICY_ITEM_CACHE_SIZE: Final = 1024
# The fields as an ASGI server wants them (lower-case bytes), for the middleware's every response.
_POLICY_NAME: Final = POLICY_FIELD.lower().encode()
_LIMIT_NAME: Final = LIMIT_FIELD.lower().encode()


@lru_cache(maxsize=POLICY_ITEM_CACHE_SIZE)  # a policy's member never changes; most responses repeat it
def policy_item(policy: Policy) -> str:
    """One member of ``RateLimit-Policy``. Names need no escaping (``Policy`` forbids ``"`` and ``\\``)."""
    window = max(1, round(policy.period_seconds))
    burst = f";{BURST_PARAMETER}={policy.burst}" if policy.burst else ""
    return f'"{policy.name}";q={policy.limit};w={window}{burst}'


def limit_item(state: PolicyState) -> str:
    """One member of ``RateLimit``."""
    reset = f";t={math.ceil(state.refill_after)}" if state.refill_after > 0 else ""
    return f'"{state.policy.name}";r={state.remaining}{reset}'


def ratelimit_headers(decision: Decision) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` for a decision (none when the store failed)."""
    if not decision.states:
        return {}
    return {
        POLICY_FIELD: ", ".join(policy_item(state.policy) for state in decision.states),
        LIMIT_FIELD: ", ".join(limit_item(state) for state in decision.states),
    }


def header_fields(decision: Decision) -> list[tuple[bytes, bytes]]:
    """``ratelimit_headers`` as raw ASGI header fields, made for every admitted response."""
    states = decision.states
    if len(states) == 1:  # nearly every request: no joins
        state = states[0]
        return [(_POLICY_NAME, policy_item(state.policy).encode()), (_LIMIT_NAME, limit_item(state).encode())]
    return [(name.lower().encode(), value.encode()) for name, value in ratelimit_headers(decision).items()]


def retry_after_seconds(decision: Decision) -> int:
    """``Retry-After`` for a refused decision: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(decision.retry_after))


def rejection_headers(decision: Decision) -> dict[str, str]:
    """The fields of a refused request: the RateLimit fields plus ``Retry-After`` when it is finite."""
    headers = ratelimit_headers(decision)
    if math.isfinite(decision.retry_after):
        headers[RETRY_AFTER] = str(retry_after_seconds(decision))
    return headers
