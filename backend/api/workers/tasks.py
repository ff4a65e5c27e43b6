"""Built-in tasks. Every process imports this module (``BUILTIN_TASK_MODULES``)."""

from __future__ import annotations

from typing import Any

from api.workers.context import JobContext
from api.workers.registry import task

NOOP_TASK = "system.noop"


@task(NOOP_TASK, max_attempts=1)
def noop(ctx: JobContext, **echo: Any) -> dict[str, Any]:
    """Do nothing and return the arguments: proves the round trip (``ret validate``, benchmarks)."""
    return {"job_id": ctx.job_id, "echo": echo}
