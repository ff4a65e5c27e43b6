"""The conversion job, ``conversion.run``: one workspace session's uploads to tables (issue 8).

It runs in the worker's process pool (``executor="process"``: flattening holds the GIL), so it
builds its own storage service from the job's settings. Errors that a retry cannot fix (a scan
limit, a bad record path, a session that is gone) end the job ``failed`` at once.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from api.core.cache_contract import CacheBackend
from api.core.config import Settings
from api.core.session_cache import build_cache
from api.errors import AppError
from api.resources import build_storage
from api.services.conversion_service import ConversionConfig, ConversionOptions, Format, convert_session
from api.services.storage_service import StorageService
from api.workers.context import JobContext
from api.workers.errors import JobFailed
from api.workers.registry import task

CONVERSION_TASK: Final = "conversion.run"
_caches: dict[tuple[str, str], CacheBackend] = {}
_caches_lock = threading.Lock()


@task(CONVERSION_TASK, executor="process")
def run_conversion(
    ctx: JobContext, formats: list[Format], record_path: str | None = None, excel: bool = False
) -> dict[str, Any]:
    """Convert the job's session; the result is the manifest's summary (the manifest is a file)."""
    if ctx.settings is None or ctx.session_id is None:
        raise JobFailed("a conversion job needs the worker's settings and a workspace session")
    options = ConversionOptions(tuple(formats), record_path, excel)
    try:
        return convert_session(
            _storage(ctx.settings),
            ctx.session_id,
            options,
            ctx.progress,
            ConversionConfig.from_settings(ctx.settings),
        )
    except AppError as exc:
        raise JobFailed(exc.detail) from None


def _storage(settings: Settings) -> StorageService:
    # One session-store connection per process and store, reused by every job the process runs.
    key = (settings.ret_session_backend, str(settings.ret_session_db))
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = build_cache(settings)
    return build_storage(settings, cache)
