"""The executor choice for background jobs, and where a Celery transport will plug in.

The module keeps its v3 name: there it configured Celery with ``task_always_eager=True``, which ran
every task inside the HTTP request that submitted it. The request was held for the whole job,
nothing was durable, retries ran inline, and a crash lost the job.

**What v4 uses: the database executor** (``EXECUTOR``). The record store's ``jobs`` table is the
queue and the record (``api.workers.queue``); workers in the API processes and in ``ret worker``
processes claim rows with a lease (``api.workers.leases``); a local wake-up starts jobs submitted in
the same process at once and a short poll finds the others. No broker, nothing else to run, and
the guarantees (at-least-once, single owner, retries, timeouts, cancellation) come from SQL, so
they hold on SQLite and on PostgreSQL alike. Eager execution survives only as a test tool:
``Worker.run_once()`` and ``Worker.run_job(job_id)`` run one job in the caller's thread.

**A Celery transport (for teams that already run Celery) is a later addition**, and this is the
boundary it uses, so adding it changes no caller:

- ``api.workers.transport.JobTransport.publish(job_id)`` is called after a job is committed. A
  ``CeleryTransport`` would ``send_task("ret.run_job", args=[job_id])`` on its broker.
- The Celery-side task calls ``Worker.run_job(job_id)``: it claims *that* row with the same lease,
  so a message delivered twice runs the job once, and the jobs table stays the record (progress,
  results, cancellation, the HTTP API) whatever carried the id.
- The local workers keep polling, so a lost message delays a job instead of losing it.

Nothing here imports Celery: the default deployment needs no broker and no Celery package.
"""

from __future__ import annotations

from typing import Final, Literal

Executor = Literal["database"]
EXECUTOR: Final[Executor] = "database"
"""The executor this build runs (the only one so far)."""

EXECUTORS: Final[dict[Executor, str]] = {
    "database": "jobs table + lease-claiming workers (api.workers.worker); no broker",
}
