"""Keeping the session store healthy: the readiness probe and the periodic sweep of expired entries."""

from __future__ import annotations

import asyncio
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


async def purge_periodically(cache: CacheBackend, interval_seconds: float) -> None:
    """Sweep expired entries every ``interval_seconds`` until cancelled; a failed sweep is logged
    and retried at the next interval, never fatal."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            removed = await asyncio.to_thread(cache.purge_expired)
        except Exception:
            logger.exception("session cache purge failed; retrying in %.0f s", interval_seconds)
        else:
            if removed:
                logger.info("session cache purge removed %d expired entries", removed)
