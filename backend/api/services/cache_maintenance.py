"""The session store's readiness probe."""

from __future__ import annotations

import logging
import uuid

from api.core.cache_contract import CacheBackend

logger = logging.getLogger(__name__)

PROBE_TTL_SECONDS = 30.0


def probe_session_store(cache: CacheBackend) -> None:
    """Write, read back and delete a throwaway key; raise if any step fails."""
    key = f"ready:{uuid.uuid4().hex}"
    cache.set(key, "ok", PROBE_TTL_SECONDS)
    try:
        if cache.get(key) != "ok":
            raise RuntimeError("session store did not return the value just written")
    finally:
        cache.delete(key)
