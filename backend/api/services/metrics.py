"""What ``GET /api/metrics`` answers, and keeping each process's counters in it.

Two kinds of series:
- per process: HTTP requests (``api.middleware.metrics``), and the session-cache and rate-limit
  counters, which ``SessionCache.stats()`` and ``RateLimiter.stats()`` keep in memory. ``publish``
  adds what they counted since the last call to ``ProcessMetrics`` counters; every process calls it
  every ``METRICS_SYNC_INTERVAL_SECONDS`` and when it stops, the answering process at each scrape.
- shared state, read at scrape time (``SharedStateCollector``): live session-cache entries and the
  jobs table (``api.workers.job_stats``), so every process answers the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Final

from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.core.cache_contract import CacheBackend
from api.core.config import Settings
from api.core.database import Database
from api.core.metrics import ProcessMetrics
from api.models.job import JOB_STATES
from api.services import maintenance
from api.services.rate_limiter import RateLimiter
from api.workers.conversion_task import CONVERSION_TASK
from api.workers.job_stats import DURATION_BUCKETS, JobFigures, JobStats

logger = logging.getLogger(__name__)

CACHE_COUNTERS: Final = (
    "hits_l1", "hits_l2", "misses", "sets", "deletes", "l1_evictions", "expired_purged",
)  # fmt: skip
LIMITER_COUNTERS: Final = ("allowed", "denied", "store_errors")


class CounterPublisher:
    """Adds the cache's and limiter's in-memory counters to ``ProcessMetrics``, as deltas."""

    def __init__(self, metrics: ProcessMetrics, cache: CacheBackend, limiter: RateLimiter) -> None:
        self._metrics = metrics
        self._cache = cache
        self._limiter = limiter
        self._lock = threading.Lock()
        self._published: dict[str, int] = dict.fromkeys((*CACHE_COUNTERS, *LIMITER_COUNTERS), 0)

    def publish(self) -> dict[str, int]:
        """Add what was counted since the last call; return the cache's stats (with ``entries``)."""
        with self._lock:
            cache_stats = self._cache.stats()
            current = {**_pick(cache_stats, CACHE_COUNTERS), **_pick(self._limiter.stats(), LIMITER_COUNTERS)}
            delta = {name: max(value - self._published[name], 0) for name, value in current.items()}
            self._published = current
            self._add(delta)
        return cache_stats

    def _add(self, delta: Mapping[str, int]) -> None:
        metrics = self._metrics
        metrics.cache_hits.labels("l1").inc(delta["hits_l1"])
        metrics.cache_hits.labels("l2").inc(delta["hits_l2"])
        metrics.cache_misses.inc(delta["misses"])
        metrics.cache_sets.inc(delta["sets"])
        metrics.cache_deletes.inc(delta["deletes"])
        metrics.cache_l1_evictions.inc(delta["l1_evictions"])
        metrics.cache_expired_purged.inc(delta["expired_purged"])
        metrics.rate_limit_decisions.labels("allowed").inc(delta["allowed"])
        metrics.rate_limit_decisions.labels("denied").inc(delta["denied"])
        metrics.rate_limit_store_errors.inc(delta["store_errors"])

    def run(self) -> int:
        """``publish`` as a periodic task (nothing removed, so nothing to log)."""
        self.publish()
        return 0


class SharedStateCollector(Collector):
    """Series computed at scrape time from state every process shares."""

    def __init__(self, figures: JobFigures, cache_entries: int) -> None:
        self._figures = figures
        self._cache_entries = cache_entries

    def collect(self) -> Iterable[Metric]:
        entries = GaugeMetricFamily("ret_session_cache_entries", "Live entries in the session store.")
        entries.add_metric([], self._cache_entries)
        yield entries
        yield from job_series(self._figures)


def job_series(figures: JobFigures) -> Iterable[Metric]:
    """The jobs table's figures as Prometheus series."""
    states = GaugeMetricFamily(
        "ret_jobs", "Jobs in the jobs table by type and state.", labels=["type", "state"]
    )
    for job_type in sorted({job_type for job_type, _ in figures.jobs}):
        for state in JOB_STATES:
            states.add_metric([job_type, state], figures.jobs.get((job_type, state), 0))
    yield states
    yield GaugeMetricFamily(
        "ret_jobs_oldest_queued_age_seconds",
        "Seconds the oldest runnable queued job has waited since it became runnable (0: none).",
        value=figures.oldest_queued_wait_seconds,
    )
    yield _run_time_histogram(figures)
    yield GaugeMetricFamily(
        "ret_conversion_records",
        "Records converted by the succeeded conversion jobs the jobs table holds (JOBS_RETENTION_DAYS).",
        value=figures.conversion_records,
    )
    yield GaugeMetricFamily(
        "ret_conversion_bytes",
        "Bytes of XML converted by the succeeded conversion jobs the jobs table holds.",
        value=figures.conversion_bytes,
    )


def _run_time_histogram(figures: JobFigures) -> Metric:
    # A gauge histogram: it describes the finished jobs the table holds now, and shrinks when old
    # jobs are pruned, so it is not a counter to rate().
    histogram = GaugeHistogramMetricFamily(
        "ret_job_duration_seconds",
        "Run time of the last attempt of finished jobs the jobs table holds, by type and state.",
        labels=["type", "state"],
    )
    for (job_type, state), times in sorted(figures.run_times.items()):
        bounds = [str(bound) for bound in DURATION_BUCKETS]
        buckets = [*zip(bounds, times.buckets, strict=True), ("+Inf", times.count)]
        histogram.add_metric([job_type, state], buckets, times.sum_seconds)
    return histogram


class MetricsService:
    """Answers scrapes and keeps this process's counters published."""

    def __init__(
        self, metrics: ProcessMetrics, publisher: CounterPublisher, job_stats: JobStats, interval: float
    ) -> None:
        self.metrics = metrics
        self.publisher = publisher
        self.job_stats = job_stats
        self.interval = interval

    def scrape(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition body and its content type (negotiated from ``accept``)."""
        cache_stats = self.publisher.publish()
        shared = SharedStateCollector(self.job_stats.read(), cache_stats["entries"])
        return self.metrics.exposition(accept, shared)

    @asynccontextmanager
    async def publishing(self) -> AsyncIterator[None]:
        """Publish periodically for the duration of the block, and once more at its end."""
        task = maintenance.PeriodicTask("metrics publishing", self.interval, self.publisher.run)
        try:
            async with maintenance.running([task]):
                yield
        finally:
            try:
                self.publisher.publish()
            except Exception:
                logger.exception("publishing the last metrics of this process failed")


def build_metrics_service(
    metrics: ProcessMetrics, settings: Settings, cache: CacheBackend, limiter: RateLimiter, database: Database
) -> MetricsService:
    """The scrape service of one app, over its session cache, rate limiter and record store."""
    publisher = CounterPublisher(metrics, cache, limiter)
    job_stats = JobStats(database, CONVERSION_TASK)
    return MetricsService(metrics, publisher, job_stats, settings.metrics_sync_interval_seconds)


def _pick(stats: Mapping[str, int], names: Iterable[str]) -> dict[str, int]:
    return {name: int(stats.get(name, 0)) for name in names}
