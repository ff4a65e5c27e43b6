"""How a worker runs: slots, lease, polling, shutdown grace and retry backoff (from settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from api.core.config import Settings
from api.workers.runner import RetryPolicy

MAX_TICK_SECONDS: Final = 0.25


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 2
    lease_seconds: float = 30.0
    poll_interval_seconds: float = 0.05
    shutdown_grace_seconds: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Settings, concurrency: int | None = None) -> WorkerConfig:
        return cls(
            concurrency=settings.ret_worker_concurrency if concurrency is None else concurrency,
            lease_seconds=settings.jobs_lease_seconds,
            poll_interval_seconds=settings.jobs_poll_interval_seconds,
            shutdown_grace_seconds=settings.jobs_shutdown_grace_seconds,
            retry=RetryPolicy(settings.jobs_retry_backoff_seconds, settings.jobs_retry_backoff_max_seconds),
        )

    @property
    def renew_seconds(self) -> float:
        """Leases are renewed three times per lease: two renewals can fail before one expires."""
        return self.lease_seconds / 3

    @property
    def tick_seconds(self) -> float:
        return min(MAX_TICK_SECONDS, self.lease_seconds / 6)
