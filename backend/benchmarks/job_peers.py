"""The three job systems ``bench_jobs.py`` compares, their tasks, and how each runs two workers.

Worker processes import this module: ours through ``JOBS_TASK_MODULES=["job_peers"]`` (with
``benchmarks/`` on ``PYTHONPATH``), Huey's consumer and Celery's worker through ``run_huey`` and
``run_celery`` below. Every task returns ``time.time()`` when it runs: throughput is measured from
the first such stamp to the last, pickup latency from the submit to the stamp, the same way for all.
Settings come from the environment the benchmark sets (``BENCH_HUEY_DB``, ``BENCH_CELERY_URL``,
``BENCH_CELERY_QUEUE``).
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

from api.workers.context import JobContext
from api.workers.registry import task

WORKERS = 2  # worker processes of every system
OURS_STAMP = "bench.stamp"
OURS_SLEEP = "bench.sleep"


# -- ours ------------------------------------------------------------------------------------------


@task(OURS_STAMP, max_attempts=1)
def stamp(ctx: JobContext) -> float:
    return time.time()


@task(OURS_SLEEP, max_attempts=1)
def sleep(ctx: JobContext, seconds: float) -> float:
    time.sleep(seconds)
    return time.time()


# -- Huey: SqliteHuey, its consumer with two worker processes, defaults otherwise ----------------------


@cache
def huey_app() -> Any:
    from huey import SqliteHuey

    huey = SqliteHuey("ret-bench", filename=os.environ["BENCH_HUEY_DB"])

    @huey.task(name="bench.huey_stamp")
    def huey_stamp() -> float:
        return time.time()

    huey.bench_stamp = huey_stamp  # type: ignore[attr-defined]
    return huey


def run_huey() -> None:
    """The consumer (``huey_consumer -w 2 -k process``), run in its own process."""
    consumer = huey_app().create_consumer(workers=WORKERS, worker_type="process", periodic=False)
    consumer.run()


# -- Celery: Redis broker and result backend, prefork pool of two ---------------------------------------


@cache
def celery_app() -> Any:
    from celery import Celery

    url = os.environ["BENCH_CELERY_URL"]
    app = Celery("ret_bench", broker=url, backend=url)
    app.conf.update(
        task_default_queue=os.environ["BENCH_CELERY_QUEUE"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )

    @app.task(name="bench.celery_stamp")
    def celery_stamp() -> float:
        return time.time()

    return app


def run_celery() -> None:
    """``celery worker --concurrency 2 --pool prefork``, run in its own process."""
    celery_app().worker_main(
        [
            "worker",
            f"--concurrency={WORKERS}",
            "--pool=prefork",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=WARNING",
        ]
    )


# -- the old design: Celery with task_always_eager ------------------------------------------------------


@cache
def eager_app() -> Any:
    """v3's configuration: every ``delay()`` runs the task inside the caller (the HTTP request)."""
    from celery import Celery

    app = Celery("ret_v3_eager")
    app.conf.update(task_always_eager=True, task_eager_propagates=True)

    @app.task(name="bench.eager_sleep")
    def eager_sleep(seconds: float) -> float:
        time.sleep(seconds)
        return time.time()

    return app
