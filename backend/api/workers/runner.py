"""Running one claimed job: call its task and turn what happened into the job's ``Outcome``.

Outcomes: the task returns JSON → ``succeeded``. It raises ``JobCancelled`` (or fails after
cancellation was requested) → ``cancelled``. Otherwise ``JobFailed``, a timeout or a non-JSON result →
``failed``, without retries. Any other exception → ``queued`` again after an exponential backoff
with jitter, until ``max_attempts`` are used, then ``dead`` with the last error. ``LeaseLost`` →
no outcome: the job is no longer this worker's. The worker writes the outcome (``leases``).
"""

from __future__ import annotations

import logging
import random
import traceback
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from api.core.config import Settings
from api.workers.child import ChildJob, ProcessPool
from api.workers.context import JobContext
from api.workers.errors import JobCancelled, JobFailed, JobTimeout, LeaseLost
from api.workers.json_values import json_problem
from api.workers.leases import LeaseStore
from api.workers.records import ClaimedJob, Outcome
from api.workers.registry import TaskRegistry, TaskSpec

logger = logging.getLogger(__name__)

MAX_ERROR_MESSAGE: Final = 2000
MAX_TRACEBACK: Final = 20_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry ``n`` waits half of ``min(max, base * 2**(n-1))`` plus a random share of the other
    half, so jobs that failed together do not all come back at the same moment."""

    base_seconds: float = 2.0
    max_seconds: float = 600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def describe(exc: BaseException) -> tuple[str, str, str]:
    """The error columns for ``exc``: type name, message, traceback (each bounded)."""
    message = str(exc) or repr(exc)
    trace = "".join(traceback.format_exception(exc))
    return type(exc).__name__, message[:MAX_ERROR_MESSAGE], trace[-MAX_TRACEBACK:]


class JobRunner:
    """Runs claimed jobs of one worker and writes their outcomes."""

    def __init__(
        self,
        leases: LeaseStore,
        registry: TaskRegistry,
        retry: RetryPolicy,
        pool: ProcessPool,
        *,
        settings: Settings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.leases = leases
        self.registry = registry
        self.retry = retry
        self.pool = pool
        self.settings = settings
        self.rng = rng or random.Random()

    def context_for(self, claimed: ClaimedJob) -> JobContext:
        timeout = claimed.timeout_seconds
        deadline = self.leases.clock() + timedelta(seconds=timeout) if timeout else None
        return JobContext(claimed, self.leases, settings=self.settings, deadline=deadline)

    def run(self, claimed: ClaimedJob, context: JobContext) -> Outcome | None:
        """Run the job's task; return its outcome, or None when this worker lost the job."""
        spec = self.registry.get(claimed.type)
        if spec is None:  # claims name only registered types; a registry change could still race
            return Outcome("failed", error=("UnknownTask", f"no task {claimed.type!r} here", None))
        try:
            result = self._call(spec, claimed, context)
            if (problem := json_problem(result)) is not None:
                raise JobFailed(f"task {claimed.type!r} returned a result that is not JSON: {problem}")
        except LeaseLost:
            logger.warning("job %s (%s): lease lost while running; stopped", claimed.id, claimed.type)
            return None
        except JobCancelled:
            return Outcome("cancelled")
        except JobTimeout as exc:
            return Outcome("failed", error=describe(exc))
        except JobFailed as exc:
            # Cancelled first, it may fail for that very reason (its session's cleanup removed what
            # it works on) before its next progress report would have stopped it.
            return Outcome("cancelled" if context.is_cancelled() else "failed", error=describe(exc))
        except Exception as exc:
            return self._failed_attempt(claimed, context, exc)
        return Outcome("succeeded", result=result, progress=100)

    def end_for_timeout(self, claimed: ClaimedJob, context: JobContext) -> None:
        """The task is past its deadline without noticing: end the job now (``failed``); the task
        stops at its next progress report, and whatever it returns is discarded."""
        context.note_ended_by_worker()
        error = ("JobTimeout", f"ran past its timeout of {claimed.timeout_seconds} s", None)
        if self.leases.finish(claimed.id, claimed.lease_token, Outcome("failed", error=error)):
            logger.warning("job %s (%s) ended: past its timeout", claimed.id, claimed.type)

    def _call(self, spec: TaskSpec, claimed: ClaimedJob, context: JobContext) -> Any:
        if spec.executor == "thread":
            return spec.function(context, **claimed.args)
        job = ChildJob(
            claimed,
            spec.function.__module__,
            self.leases.database.url,
            self.settings,
            context.deadline,
        )
        try:
            return self.pool.submit(job).result()
        except BrokenProcessPool:
            self.pool.discard()
            raise

    def _failed_attempt(self, claimed: ClaimedJob, context: JobContext, exc: Exception) -> Outcome:
        error = describe(exc)
        # Read, not the flag as last seen: a process-pool task reports progress from its child, so
        # this process may not have heard of the cancellation yet.
        if context.is_cancelled():
            return Outcome("cancelled", error=error)
        if claimed.attempts >= claimed.max_attempts:
            return Outcome("dead", error=error)
        delay = self.retry.delay(claimed.attempts, self.rng)
        logger.info(
            "job %s (%s) attempt %d of %d failed (%s); retrying in %.1f s",
            claimed.id,
            claimed.type,
            claimed.attempts,
            claimed.max_attempts,
            error[0],
            delay,
        )
        return Outcome("queued", error=error, run_after=self.leases.clock() + timedelta(seconds=delay))
