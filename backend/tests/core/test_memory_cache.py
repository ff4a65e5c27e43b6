"""MemoryCache: the shared contract, plus what is particular to the in-memory test backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.core.memory_cache import MemoryCache
from api.core.session_cache import build_cache
from tests.conftest import make_settings

pytest.register_assert_rewrite("tests.core.cache_contract")  # plain asserts in the mixin report values

from tests.core.cache_contract import (  # noqa: E402
    DEFAULT_TTL,
    MAX_VALUE_BYTES,
    CacheContract,
    CacheFactory,
    FakeClock,
)


class TestMemoryCacheContract(CacheContract):
    @pytest.fixture
    def cache_factory(self) -> Iterator[CacheFactory]:
        built: list[MemoryCache] = []

        def factory(clock: FakeClock) -> MemoryCache:
            cache = MemoryCache(default_ttl=DEFAULT_TTL, clock=clock, max_value_bytes=MAX_VALUE_BYTES)
            built.append(cache)
            return cache

        yield factory
        for cache in built:
            cache.close()


def test_default_value_limit_is_one_mebibyte() -> None:
    cache = MemoryCache()
    cache.set("k", b"x" * 1024 * 1024)
    with pytest.raises(ValueError, match="limit"):
        cache.set("k", b"x" * (1024 * 1024 + 1))
    assert cache.get("k") == b"x" * 1024 * 1024


def test_clear_local_keeps_every_entry() -> None:
    cache = MemoryCache()
    cache.set("k", 1)
    cache.clear_local()
    assert cache.get("k") == 1


def test_invalid_default_ttl_is_rejected() -> None:
    with pytest.raises(ValueError, match="ttl"):
        MemoryCache(default_ttl=0)


def test_memory_backend_is_selected_by_setting(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ret_session_backend="memory", session_cache_ttl_seconds=42)
    cache = build_cache(settings)
    assert isinstance(cache, MemoryCache)
    cache.set("k", 1)
    assert cache.ttl("k") == pytest.approx(42, abs=1)
    assert not settings.ret_session_db.exists()
