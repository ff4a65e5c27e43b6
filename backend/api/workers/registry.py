"""Tasks by name: the ``@task`` decorator and the registry the queue and the workers look names up in.

A task is a function ``fn(ctx, **args) -> result``: ``ctx`` is a ``JobContext``, ``args`` are the
job's JSON keyword arguments, and the result must be JSON. A task must be **idempotent**: a job runs
at least once, and again after its worker dies mid-way, so running it twice must leave the same
outcome as running it once (write outputs under fixed names, replace rather than append).

Names are explicit and stable (``"conversion.run"``), never derived from the function, because
queued rows refer to them: renaming a function must not orphan jobs. Every process imports the
same task modules (``BUILTIN_TASK_MODULES`` plus ``JOBS_TASK_MODULES``) through ``load_task_modules``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

# "thread": run in the worker's thread pool (I/O-bound work, the default).
# "process": run in the worker's process pool (CPU-bound work that would hold the GIL).
Executor = Literal["thread", "process"]
TASK_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
# Modules imported by every API and worker process; a new part of the app that defines tasks adds
# its module here.
BUILTIN_TASK_MODULES: Final = ("api.workers.tasks", "api.workers.conversion_task")

PLAIN_KINDS: Final = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

TaskFunction = TypeVar("TaskFunction", bound=Callable[..., Any])
PeriodicFunction = TypeVar("PeriodicFunction", bound=Callable[[], object])


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A registered task and its per-type options (``None``: the queue's default)."""

    name: str
    function: Callable[..., Any]
    executor: Executor = "thread"
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    signature: inspect.Signature = field(init=False, repr=False, compare=False)
    # For the usual ``fn(ctx, a, b=1, *, c)``: its keyword names and the required ones, so a submit
    # checks its arguments with two set operations instead of ``Signature.bind``.
    _names: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _required: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        signature = inspect.signature(self.function)
        parameters = list(signature.parameters.values())[1:]
        plain = bool(signature.parameters) and all(p.kind in PLAIN_KINDS for p in parameters)
        object.__setattr__(self, "signature", signature)
        object.__setattr__(self, "_names", frozenset(p.name for p in parameters) if plain else None)
        object.__setattr__(self, "_required", frozenset(p.name for p in parameters if p.default is p.empty))

    def check_arguments(self, args: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` (naming the argument) if ``args`` do not fit the task's parameters."""
        if self._names is None:
            self.signature.bind(None, **args)
        elif unexpected := args.keys() - self._names:
            raise TypeError(f"got an unexpected keyword argument {min(unexpected)!r}")
        elif missing := self._required - args.keys():
            raise TypeError(f"missing a required argument: {min(missing)!r}")


@dataclass(frozen=True, slots=True)
class PeriodicEntry:
    """A function a module asks the scheduler to run every ``interval_seconds`` (once across all
    processes)."""

    name: str
    interval_seconds: float
    run: Callable[[], object]


class TaskRegistry:
    """Task specs by name, and periodic functions registered by task modules."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}
        self._periodic: dict[str, PeriodicEntry] = {}
        self._lock = threading.Lock()

    def task(
        self,
        name: str,
        *,
        executor: Executor = "thread",
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
    ) -> Callable[[TaskFunction], TaskFunction]:
        """Register the decorated function as task ``name``; the function itself is returned as is.

        Raises:
            ValueError: a bad name or option, or ``name`` is taken by another function.
        """

        def decorate(function: TaskFunction) -> TaskFunction:
            self.register(TaskSpec(name, function, executor, max_attempts, timeout_seconds))
            return function

        return decorate

    def register(self, spec: TaskSpec) -> None:
        """Add ``spec``; registering the same function again under its name is a no-op."""
        _check_spec(spec)
        with self._lock:
            existing = self._tasks.get(spec.name)
            if existing is not None and _qualified(existing.function) != _qualified(spec.function):
                raise ValueError(f"task name {spec.name!r} is already registered by {existing.function!r}")
            self._tasks[spec.name] = spec

    def get(self, name: str) -> TaskSpec | None:
        return self._tasks.get(name)

    def names(self) -> tuple[str, ...]:
        """Every registered task name, sorted."""
        return tuple(sorted(self._tasks))

    def periodic(
        self, name: str, *, interval_seconds: float
    ) -> Callable[[PeriodicFunction], PeriodicFunction]:
        """Ask every process's scheduler to run the decorated function every ``interval_seconds``."""
        if interval_seconds <= 0:
            raise ValueError(f"periodic {name!r}: interval_seconds must be positive")

        def decorate(function: PeriodicFunction) -> PeriodicFunction:
            with self._lock:
                self._periodic[name] = PeriodicEntry(name, interval_seconds, function)
            return function

        return decorate

    def periodic_tasks(self) -> list[PeriodicEntry]:
        return list(self._periodic.values())


def _check_spec(spec: TaskSpec) -> None:
    if not TASK_NAME.fullmatch(spec.name):
        raise ValueError(f"task name {spec.name!r}: use 1-100 letters, digits and . _ : -")
    if spec.executor not in ("thread", "process"):
        raise ValueError(f"task {spec.name!r}: executor must be 'thread' or 'process'")
    if spec.max_attempts is not None and spec.max_attempts < 1:
        raise ValueError(f"task {spec.name!r}: max_attempts must be at least 1")
    if spec.timeout_seconds is not None and spec.timeout_seconds <= 0:
        raise ValueError(f"task {spec.name!r}: timeout_seconds must be positive")
    if spec.executor == "process" and "<locals>" in spec.function.__qualname__:
        # A process-pool child finds the function by importing its module.
        raise ValueError(f"task {spec.name!r}: a process task must be a module-level function")


def _qualified(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


registry = TaskRegistry()
"""The process-wide registry that ``@task`` fills and the app's queue and workers use."""

task = registry.task
periodic = registry.periodic


def load_task_modules(modules: Iterable[str] = ()) -> None:
    """Import the built-in task modules and ``modules`` (``JOBS_TASK_MODULES``) so their tasks
    register; importing twice is harmless.

    Raises:
        ImportError: a module cannot be imported.
    """
    for name in (*BUILTIN_TASK_MODULES, *modules):
        importlib.import_module(name)
