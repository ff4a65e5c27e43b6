"""Errors of the job queue: the API errors callers see, and the signals a running task receives."""

from __future__ import annotations

from api.errors import AppError, ConflictError, NotFoundError


class UnknownTaskError(AppError):
    """``submit`` named a task no module registered."""

    status_code = 422
    code = "unknown_task"


class InvalidJobError(AppError):
    """``submit`` got arguments or options the task cannot take (not JSON, wrong names, bad limits)."""

    status_code = 422
    code = "invalid_job"


class JobNotFoundError(NotFoundError):
    code = "job_not_found"


class JobStateError(ConflictError):
    """The job's state does not allow the operation (cancel a finished job, retry a pending one)."""

    code = "job_state_conflict"


# -- raised inside a running task ------------------------------------------------------------


class JobInterrupted(Exception):
    """The job must stop now: raised by ``JobContext.progress``; tasks should let it propagate."""


class JobCancelled(JobInterrupted):
    """Someone cancelled the job; it ends ``cancelled``."""


class JobTimeout(JobInterrupted):
    """The job ran past its timeout; it ends ``failed``."""


class LeaseLost(JobInterrupted):
    """This worker no longer holds the job (its lease expired and another worker took it over, or
    the worker released it on shutdown); nothing this execution does can change the job."""


class JobFailed(Exception):
    """Raise from a task to fail the job for good, without retries (bad input, not a glitch)."""
