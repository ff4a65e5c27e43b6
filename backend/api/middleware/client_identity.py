"""Who a request counts against: the verified user of its access token, else its client address.

The address comes from the ASGI scope only. Forwarded headers are applied before the app sees the
request, by uvicorn for the proxies in ``RET_TRUSTED_PROXIES`` (the right-most untrusted hop wins);
this module never reads ``X-Forwarded-For`` or ``Forwarded`` itself, so an untrusted client cannot
choose its identity. IPv6 clients are grouped by /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from typing import Final

from starlette.types import Scope

from api.services.rate_limiter import AccessTokenVerifier

logger = logging.getLogger(__name__)

IPV6_GROUP_PREFIX: Final = 64
MAX_TOKEN_LENGTH: Final = 8192
MAX_HOST_LENGTH: Final = 255
ADDRESS_CACHE_SIZE: Final = 65536


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if there is one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and 0 < len(token) <= MAX_TOKEN_LENGTH:
                return token
            return None
    return None


def verified_user(token: str, verify: AccessTokenVerifier) -> str | None:
    """The user id ``verify`` vouches for; a verifier that raises counts as a refusal."""
    try:
        user = verify(token)
    except Exception:
        logger.exception("access-token verifier failed; counting the request against its address")
        return None
    return user if isinstance(user, str) else None


@lru_cache(maxsize=ADDRESS_CACHE_SIZE)  # parsing an address costs more than the rest of a decision
def address_identity(host: str) -> str:
    """``ip:<address>`` (IPv4, IPv4-mapped IPv6), ``ip:<prefix>/64`` (IPv6), or ``host:<name>``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # Not an address (a unix socket peer, a test client): still one bucket per peer name.
        return f"host:{host[:MAX_HOST_LENGTH]}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((address, IPV6_GROUP_PREFIX), strict=False)}"
    return f"ip:{address}"


def client_identity(scope: Scope, verify: AccessTokenVerifier | None) -> str | None:
    """``user:<id>`` for a verified token, else the address identity; None when neither exists."""
    token = bearer_token(scope) if verify is not None else None
    if token is not None and verify is not None:
        user = verified_user(token, verify)
        if user:
            return f"user:{user}"
    client = scope.get("client")
    return address_identity(client[0]) if client and client[0] else None
