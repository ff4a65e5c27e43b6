"""Per-process Prometheus instruments and their exposition, correct with several worker processes.

Counters that each process keeps (HTTP requests, session-cache and rate-limit counters) live in
``ProcessMetrics``. When ``PROMETHEUS_MULTIPROC_DIR`` is set (``ret serve --workers N`` sets it, to an
emptied directory under the runtime root), prometheus-client keeps every process's values in files
there and a scrape sums the files of all processes, so any worker answers with the whole server's
counts. Without it, a process's own values are exposed: right for a single process only.

prometheus-client reads the variable from the environment when it is first imported, so a
mismatch between that and the settings stops start-up instead of exposing one worker's view.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.core.config import Settings

HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds; the default buckets of prometheus-client, plus finer steps below 25 ms.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
# Prometheus' own names for the multiprocess files; only these are removed when the directory is reset.
MULTIPROCESS_FILE_PATTERNS: Final = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")


def multiprocess_values_enabled() -> bool:
    """True when prometheus-client keeps values in ``PROMETHEUS_MULTIPROC_DIR`` files."""
    return values.ValueClass is not values.MutexValue


def reset_multiprocess_directory(directory: Path) -> None:
    """Create ``directory`` and remove the value files an earlier server left in it.

    Call it once, before any worker process starts; the files of a live process must stay.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for pattern in MULTIPROCESS_FILE_PATTERNS:
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)


class ProcessMetrics:
    """The counters and histogram this process updates, on a registry of its own.

    Raises:
        RuntimeError: ``PROMETHEUS_MULTIPROC_DIR`` in the settings and in prometheus-client disagree.
    """

    def __init__(self, settings: Settings) -> None:
        self.multiprocess_dir = settings.prometheus_multiproc_dir
        _check_mode(self.multiprocess_dir)
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "ret_http_requests",
            "HTTP requests answered, by route template ('unmatched' for unknown paths), method, status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "ret_http_request_duration_seconds",
            "Time from receiving an HTTP request to the end of its response, by route template and method.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = self._counter("ret_session_cache_hits", "Session-cache hits by level.", ("level",))
        self.cache_misses = self._counter("ret_session_cache_misses", "Session-cache misses.")
        self.cache_sets = self._counter("ret_session_cache_sets", "Session-cache writes.")
        self.cache_deletes = self._counter("ret_session_cache_deletes", "Session-cache entries deleted.")
        self.cache_l1_evictions = self._counter(
            "ret_session_cache_l1_evictions", "Entries evicted from the in-process cache (L1)."
        )
        self.cache_expired_purged = self._counter(
            "ret_session_cache_expired_purged", "Expired session-cache entries removed."
        )
        self.rate_limit_decisions = self._counter(
            "ret_rate_limit_decisions",
            "Rate-limit decisions (requests, login attempts, upload bytes), by decision.",
            ("decision",),
        )
        self.rate_limit_store_errors = self._counter(
            "ret_rate_limit_store_errors", "Rate-limit store failures (admitted or 503, per the setting)."
        )

    def _counter(self, name: str, documentation: str, labels: Iterable[str] = ()) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def exposition(self, accept: str | None, shared: Collector) -> tuple[bytes, str]:
        """The scrape body and its content type: every process's counters plus ``shared``."""
        registry = CollectorRegistry()
        if self.multiprocess_dir is not None:
            MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        else:
            registry.register(_Forward(self.registry))
        registry.register(shared)
        encode, content_type = choose_encoder(accept or "")
        return encode(registry), content_type


class _Forward(Collector):
    """Exposes another registry's metrics inside a scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


def _check_mode(directory: Path | None) -> None:
    enabled = multiprocess_values_enabled()
    if directory is not None and not enabled:
        raise RuntimeError(
            "PROMETHEUS_MULTIPROC_DIR: set in the settings but not in this process's environment when "
            "it started; export it (ret serve --workers N does) or remove it from backend/.env"
        )
    if directory is None and enabled:
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR: in the environment but missing from the settings")
